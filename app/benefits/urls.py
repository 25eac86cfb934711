from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.urls import include, path

from core import company_files, expenses, metrics, mfa, passwords, privacy, views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz),
    path("metrics", metrics.metrics, name="metrics"),
    path("static/app.css", views.stylesheet, name="stylesheet"),
    path("login/", views.Login.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("reauth/", views.reauth, name="reauth"),
    path("mfa/", mfa.mfa, name="mfa"),
    path("mfa/enrol/", mfa.enrol, name="mfa-enrol"),
    path("mfa/enrol/<str:uidb64>/<str:token>/", mfa.enrol_link, name="mfa-enrol-link"),
    path("mfa/remove/", mfa.remove, name="mfa-remove"),
    path("password/", include(passwords.urls())),
    path("oidc/", include(views.oidc_urls())),
    path("hr/employees/", views.hr_employees, name="hr-employees"),
    path("me/export.json", views.my_export, name="my-export"),
    path("expenses/", login_required(expenses.my_expenses), name="my-expenses"),
    path("expenses/<int:pk>/resubmit", login_required(expenses.resubmit), name="resubmit"),
    path("expenses/<int:pk>/receipt", login_required(expenses.receipt), name="receipt"),
    path("hr/expenses/", login_required(expenses.hr_expenses), name="hr-expenses"),
    path("hr/expenses/<int:pk>/decide", login_required(expenses.hr_decide), name="hr-decide"),
    path("settings/ai/", login_required(expenses.ai_settings), name="ai-settings"),
    path("settings/files/", login_required(company_files.files_page), name="company-files"),
    path("settings/files/<int:pk>/", login_required(company_files.file_text), name="company-file"),
    path("settings/files/<int:pk>/delete", login_required(company_files.delete_file), name="company-file-delete"),
    path("me/requests/", login_required(privacy.my_requests), name="my-requests"),
    path("hr/requests/", login_required(privacy.hr_requests), name="hr-requests"),
    path("hr/requests/<int:pk>/close", login_required(privacy.hr_close), name="hr-close-request"),
    path("privacy/", views.privacy, name="privacy"),
    path("subprocessors/", views.subprocessors, name="subprocessors"),
]
