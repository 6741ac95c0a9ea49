from django.urls import path

from . import views

app_name = "credits"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("history.csv", views.history_csv, name="history_csv"),
    path("finance/", views.finance, name="finance"),
    path("finance.csv", views.finance_csv, name="finance_csv"),
]
