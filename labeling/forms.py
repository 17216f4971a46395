from django import forms


class UploadForm(forms.Form):
    image = forms.FileField(widget=forms.ClearableFileInput(attrs={"accept": "image/*"}))


class ReviewForm(forms.Form):
    label = forms.CharField(required=False)
    reject = forms.BooleanField(required=False)
    reason = forms.CharField(required=False, max_length=2000)
