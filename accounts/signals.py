from django.contrib import messages
from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver


@receiver(user_logged_out)
def confirm_logout(sender, request, user, **kwargs) -> None:
    # Logging out lands on the login page; say plainly that it worked.
    messages.info(request, "You are logged out.")
