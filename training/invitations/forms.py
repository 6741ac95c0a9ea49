"""Forms of the invitation pages (a manager's invite, a learner's accept or join link): every
POST they read goes through one of these, with limits that match the columns, so that odd
input is a form error on the page, never a 500."""

from django import forms
from django.contrib.auth.password_validation import validate_password

from accounts.models import User
from catalog.models import Level
from training.common import split_emails

# A pasted list beyond these is not a typing mistake but a file: it would hold one credit per
# address, so the manager splits it rather than the server chewing on it.
MAX_EMAILS = 1_000


MAX_EMAILS_TEXT = 100_000


# What Django's own password forms accept; the hash column is unrelated to it.
PASSWORD_LENGTH = 128


class InviteForm(forms.Form):
    """A manager invites learners to one level of their course."""

    level = forms.ModelChoiceField(
        queryset=Level.objects.none(),
        error_messages={
            "required": "Choose a level of this course.",
            "invalid_choice": "Choose a level of this course.",
        },
    )
    emails = forms.CharField(
        max_length=MAX_EMAILS_TEXT,
        error_messages={
            "required": "Enter the email addresses to invite.",
            "max_length": f"That list is longer than {MAX_EMAILS_TEXT // 1000} kB: "
            "split it into several invitations.",
        },
    )
    # One per rendered form: a double submission returns the same invitations.
    token = forms.UUIDField(required=False)

    def __init__(self, *args, course, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["level"].queryset = course.levels.all()

    def clean_emails(self) -> str:
        text = self.cleaned_data["emails"]
        if len(split_emails(text)) > MAX_EMAILS:
            raise forms.ValidationError(
                f"Invite at most {MAX_EMAILS:,} addresses at a time: split the list."
            )
        return text


class AcceptForm(forms.Form):
    """Accepting an invitation or joining a plan. Someone not signed in, whose address has no
    account yet, chooses a password; a signed-in learner posts the form empty."""

    password = forms.CharField(
        required=False,
        strip=False,
        max_length=PASSWORD_LENGTH,
        widget=forms.PasswordInput,
        error_messages={
            "max_length": f"Choose a password of at most {PASSWORD_LENGTH} characters."
        },
    )

    def __init__(self, *args, email: str, needs_password: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.email = email
        self.needs_password = needs_password

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if not self.needs_password:
            return ""
        if not password:
            raise forms.ValidationError("Choose a password.")
        # Raises the validators' messages (too short, too common, like the address...).
        validate_password(password, User(email=self.email))
        return password


class ResendForm(forms.Form):
    """Re-invite: the rendered form's token makes a double click send one new link."""

    token = forms.UUIDField(required=False)


class ReplaceInvitationForm(forms.Form):
    """Give a pending invitation to someone else: the new address, and the one the page
    showed (a seat given away meanwhile is refused, not moved twice)."""

    email = forms.CharField(
        max_length=254,
        strip=True,
        error_messages={"required": "Enter the email address of the person to invite instead."},
    )
    expected = forms.CharField(max_length=254, strip=True)


class LearnersListForm(forms.Form):
    """Which part of a manager's learners list: its page, and whether only the invitations
    not started for two weeks. Read from the query string, and from the row forms posted
    from that list (so an action returns to where the manager was)."""

    page = forms.IntegerField(required=False, min_value=1, max_value=1_000_000)
    stale = forms.BooleanField(required=False)
