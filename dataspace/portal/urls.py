from django.contrib.auth import views as auth_views
from django.urls import path, re_path
from django.views.generic import RedirectView

from dataspace.portal import spa

app_name = "portal"

# The portal is the React app (frontend/), served at the root behind the login; the login stays
# a Django page (a plain form with Django's CSRF token, no script needed to log in).
urlpatterns = [
    path("", spa.app, name="home"),
    path("login/", auth_views.LoginView.as_view(template_name="portal/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # The app's first address; its hash routes (#/explorer/…) survive the redirect in browsers.
    re_path(r"^app/.*$", RedirectView.as_view(pattern_name="portal:home", permanent=False), name="app"),
]
