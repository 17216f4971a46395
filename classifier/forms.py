from django import forms

from .training import ARCHITECTURES, LEARNING_RATE_MAX, LEARNING_RATE_MIN, TrainingOptions

_DEFAULTS = TrainingOptions()


class TrainingForm(forms.Form):
    architecture = forms.ChoiceField(choices=[(a, a) for a in ARCHITECTURES], initial=_DEFAULTS.architecture)
    image_size = forms.IntegerField(min_value=16, max_value=1024, initial=_DEFAULTS.image_size)
    epochs = forms.IntegerField(min_value=1, max_value=100, initial=_DEFAULTS.epochs)
    batch_size = forms.IntegerField(min_value=1, max_value=512, initial=_DEFAULTS.batch_size)
    learning_rate = forms.FloatField(required=False, min_value=LEARNING_RATE_MIN, max_value=LEARNING_RATE_MAX,
                                     initial=_DEFAULTS.learning_rate,
                                     help_text="Leave empty to use the learning-rate finder.")
    pretrained = forms.BooleanField(required=False, initial=_DEFAULTS.pretrained,
                                    help_text="Use local pretrained weights when they are in the torch cache.")
    cleaning_folds = forms.IntegerField(min_value=0, max_value=10, initial=0,
                                        help_text="2 or more: a k-fold pass that gives every training photo an "
                                                  "out-of-sample loss for the data cleaner (k extra fits).")
    activate = forms.BooleanField(required=False, initial=False, help_text="Activate the new version when it succeeds.")
    include_model_labels = forms.BooleanField(
        required=False, initial=False,
        help_text="Also train on the model's own auto-accepted labels (never checked by a person). Recorded with the run.")
