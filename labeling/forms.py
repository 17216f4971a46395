from django import forms


class UploadForm(forms.Form):
    image = forms.FileField(widget=forms.ClearableFileInput(attrs={"accept": "image/*"}))


class ReviewForm(forms.Form):
    label = forms.CharField(required=False)
    reject = forms.BooleanField(required=False)
    reason = forms.CharField(required=False, max_length=2000)


class PhotoIdsField(forms.Field):
    """Photo ids sent as one field repeated (?photos=1&photos=2). Any id that is a number: one
    decided or deleted since the page was drawn is the service's to refuse, saying why."""

    widget = forms.MultipleHiddenInput

    def __init__(self, *args, max_count=200, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_count = max_count

    def to_python(self, value):
        if len(value or []) > self.max_count:
            raise forms.ValidationError(f"At most {self.max_count} photos at once.")
        ids = []
        for item in value or []:
            if not str(item).isdigit() or not 0 < int(item) < 2**63:
                raise forms.ValidationError(f"{str(item)[:20]!r} is not a photo id.")
            ids.append(int(item))
        return ids


class ReviewGridForm(forms.Form):
    """The grid's confirm: the label, and the photos ticked as right (labeling.review.review_confirm_many)."""

    label = forms.CharField(max_length=64)
    photos = PhotoIdsField(required=False)


class CorrectionForm(ReviewForm):
    # The photo's decided_at when the page was rendered (see labeling.review.review_correct).
    decided_at = forms.DateTimeField(required=False, widget=forms.HiddenInput)


class PhotoBrowseForm(forms.Form):
    """The filters of the page of every photo (labeling.views.photos_browse); "" is any."""

    status = forms.ChoiceField(required=False)
    label = forms.ChoiceField(required=False)
    owner = forms.CharField(required=False, max_length=150, label="Uploaded by")

    def __init__(self, data, *, statuses, labels):
        super().__init__(data)
        self.fields["status"].choices = [("", "any state"), *((value, name.lower()) for value, name in statuses)]
        self.fields["label"].choices = [("", "any label"), *((name, name) for name in labels)]
