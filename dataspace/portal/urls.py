from django.contrib.auth import views as auth_views
from django.urls import path, re_path

from dataspace.portal import spa, views

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("upload/", views.upload, name="upload"),
    path("login/", auth_views.LoginView.as_view(template_name="portal/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("app/", spa.app, name="app"),
    re_path(r"^app/(?P<path>.*)$", spa.app, name="app-path"),
]
