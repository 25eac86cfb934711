from django.contrib.auth import views as auth_views
from django.urls import path

from core import views

urlpatterns = [
    path("healthz", views.healthz),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("mfa/", views.mfa, name="mfa"),
    path("hr/employees/", views.hr_employees, name="hr-employees"),
    path("me/export.json", views.my_export, name="my-export"),
    path("privacy/", views.privacy, name="privacy"),
    path("subprocessors/", views.subprocessors, name="subprocessors"),
]
