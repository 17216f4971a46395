from django import forms


class UploadForm(forms.Form):
    image = forms.FileField(widget=forms.ClearableFileInput(attrs={"accept": "image/*"}))


class ReviewForm(forms.Form):
    label = forms.CharField(required=False)
    reject = forms.BooleanField(required=False)
    reason = forms.CharField(required=False, max_length=2000)


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
