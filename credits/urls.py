from django.urls import path

from . import views

app_name = "credits"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("history.csv", views.history_csv, name="history_csv"),
]
