from django.urls import path

from . import views

app_name = "catalog"
urlpatterns = [
    path("", views.index, name="index"),
    path("courses/<slug:slug>/", views.course, name="course"),
    path("levels/<int:level_id>/add/", views.cart_add, name="cart_add"),
    path("cart/", views.cart, name="cart"),
    path("cart/lines/<int:pk>/", views.cart_line, name="cart_line"),
]
