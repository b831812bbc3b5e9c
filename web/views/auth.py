"""Signing up, in and out, password resets, and the resident's profile."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.http import require_http_methods, require_POST

from utility.payments.selectors import wallet_balance_uk

from ..forms import LoginForm, ProfileForm, SignUpForm
from ..selectors import api_token_for
from ..services import api_token_revoke, api_token_rotate, profile_update, resident_sign_up


def landing(request: HttpRequest) -> HttpResponse:
    """Signed in: the dashboard. Otherwise what Commonwatt is, and the way in."""
    if request.user.is_authenticated:
        return redirect("web:dashboard")
    return render(request, "web/landing.html")


@require_http_methods(["GET", "POST"])
def sign_up(request: HttpRequest) -> HttpResponse:
    form = SignUpForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            user = resident_sign_up(data["username"], data["email"], data["password1"])
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error("password1" if field == "password" else field if field in form.fields else None, errors)
        else:
            login(request, user, backend="web.ratelimit.RateLimitedBackend")
            messages.success(request, f"Welcome, {user.get_username()}! Buy coins, then fund a meter.")
            return redirect("web:dashboard")
    return render(request, "web/auth/sign_up.html", {"form": form}, status=400 if form.errors else 200)


class LoginView(auth_views.LoginView):
    form_class = LoginForm
    template_name = "web/auth/login.html"
    redirect_authenticated_user = True

    def form_invalid(self, form):
        response = super().form_invalid(form)
        response.status_code = 429 if form.has_error("__all__", "locked") else 400
        return response


class LogoutView(auth_views.LogoutView):
    """POST only (Django's rule): a link cannot log anyone out."""

    next_page = reverse_lazy("web:login")


class PasswordResetView(auth_views.PasswordResetView):
    template_name = "web/auth/password_reset.html"
    email_template_name = "web/auth/password_reset_email.txt"
    subject_template_name = "web/auth/password_reset_subject.txt"
    success_url = reverse_lazy("web:password_reset_done")


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "web/auth/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "web/auth/password_reset_confirm.html"
    success_url = reverse_lazy("web:password_reset_complete")


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "web/auth/password_reset_complete.html"


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "web/auth/password_change.html"
    success_url = reverse_lazy("web:profile")

    def form_valid(self, form):
        messages.success(self.request, "Your password was changed.")
        return super().form_valid(form)


@login_required
@require_http_methods(["GET", "POST"])
def profile(request: HttpRequest) -> HttpResponse:
    user = request.user
    initial = {"email": user.email, "first_name": user.first_name, "last_name": user.last_name}
    form = ProfileForm(request.POST if request.method == "POST" else None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            profile_update(user, **form.cleaned_data)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            messages.success(request, "Profile saved.")
            return redirect("web:profile")
    context = {
        "form": form,
        "balance_uk": wallet_balance_uk(user),
        "token": api_token_for(user),
    }
    return render(request, "web/auth/profile.html", context, status=400 if form.errors else 200)


@login_required
@require_POST
def token_rotate(request: HttpRequest) -> HttpResponse:
    if request.POST.get("action") == "revoke":
        api_token_revoke(request.user)
        messages.success(request, "Your API token was revoked.")
    else:
        api_token_rotate(request.user)
        messages.success(request, "A new API token was issued; the old one no longer works.")
    return redirect("web:profile")
