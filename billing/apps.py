from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"

    def ready(self) -> None:
        from credits.signals import available_lowered

        from .autotopup import on_available_lowered

        available_lowered.connect(on_available_lowered, dispatch_uid="billing.auto_top_up")
