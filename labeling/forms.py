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
