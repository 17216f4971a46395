"""Anyone logged in changes their own password at /account/password/: the old one is checked
(and counted as a failed login when wrong), other sessions end and the API token is revoked."""

from django.test import Client
from rest_framework.authtoken.models import Token

PASSWORD = "pw-for-tests-1"
NEW = "a-new-long-passphrase-42"


def _logged_in(user):
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _change(client, old=PASSWORD, new=NEW, again=None):
    return client.post("/account/password/", {"old_password": old, "new_password1": new,
                                              "new_password2": again if again is not None else new},
                       follow=True)


def test_a_member_changes_their_password_and_logs_in_with_the_new_one_only(member):
    client = _logged_in(member)

    response = _change(client)

    assert response.redirect_chain[-1][0] == "/"
    assert "Your password is changed; your other sessions are logged out." in response.content.decode()
    assert client.get("/").status_code == 200  # this session stays logged in
    assert Client().login(username="member", password=NEW)
    assert not Client().login(username="member", password=PASSWORD)


def test_changing_the_password_logs_out_the_other_sessions_and_revokes_the_api_token(member):
    elsewhere = _logged_in(member)
    token = Token.objects.create(user=member)
    client = _logged_in(member)

    response = _change(client)

    assert "and your API token is revoked." in response.content.decode()
    assert elsewhere.get("/").status_code == 302  # sent to the login page
    assert not Token.objects.filter(key=token.key).exists()
    api = Client(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert api.get("/api/v1/photos/").status_code == 401


def test_a_wrong_old_password_changes_nothing_and_counts_as_a_failed_login(member, settings):
    settings.LOGIN_MAX_FAILURES = 2
    client = _logged_in(member)

    first = _change(client, old="a guess")
    second = _change(client, old="another guess")
    right = _change(client)

    assert "Your old password was entered incorrectly" in first.content.decode()
    assert second.status_code == 200
    assert right.status_code == 429 and "Too many failed logins" in right.content.decode()
    member.refresh_from_db()
    assert member.check_password(PASSWORD)
    # The same counter guards the login page: the account is locked there too for the window.
    assert Client().post("/login/", {"username": "member", "password": PASSWORD}).status_code == 429


def test_a_weak_or_mistyped_new_password_is_refused_with_the_reason(member):
    client = _logged_in(member)

    weak = _change(client, new="12345678")
    mistyped = _change(client, again=NEW + "x")

    assert "This password is too common." in weak.content.decode()
    assert "The two password fields didn’t match." in mistyped.content.decode()
    member.refresh_from_db()
    assert member.check_password(PASSWORD)


def test_the_password_page_needs_a_login_and_is_linked_from_every_page(member):
    assert Client().get("/account/password/")["Location"].startswith("/login/?next=/account/password/")
    assert 'href="/account/password/"' in _logged_in(member).get("/").content.decode()
