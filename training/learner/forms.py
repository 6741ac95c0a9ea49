"""The learner's progress form."""

from django import forms


class ProgressForm(forms.Form):
    # Absent on the Start button of an accepted course: starting is progress 0.
    progress = forms.IntegerField(
        min_value=0,
        max_value=100,
        required=False,
        error_messages={"invalid": "Choose how far you are."},
    )

    def clean_progress(self) -> int:
        return self.cleaned_data["progress"] or 0
