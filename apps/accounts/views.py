from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth import login, logout, update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from apps.security.throttling import signup_retry_after
from apps.security.tokens import api_token_create, api_token_revoke, api_token_rotate, api_tokens_of

from .deletion import account_delete
from .forms import AccountDeleteForm, SignupForm, TokenCreateForm
from .services import user_signup
from .sessions import user_sessions_end

logger = logging.getLogger(__name__)


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("content:list")
    form = SignupForm(request.POST or None)
    if request.method == "POST":
        wait = signup_retry_after(request)
        if wait is not None:
            detail = f"Too many new accounts from this address. Try again in {max(1, (wait + 59) // 60)} minutes."
            response = render(request, "accounts/locked_out.html", {"detail": detail}, status=429)
            response["Retry-After"] = str(wait)
            return response
    if request.method == "POST" and form.is_valid():
        user = user_signup(username=form.cleaned_data["username"], password=form.cleaned_data["password1"])
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("content:list")
    return render(request, "accounts/signup.html", {"form": form}, status=400 if form.errors else 200)


def _user(request: HttpRequest) -> User:
    user = request.user
    if not isinstance(user, User):  # login_required has run; this narrows the type
        raise Http404
    return user


def _account_page(
    request: HttpRequest,
    *,
    password_form: PasswordChangeForm | None = None,
    token_form: TokenCreateForm | None = None,
    delete_form: AccountDeleteForm | None = None,
    new_key: str | None = None,
    status: int = 200,
) -> HttpResponse:
    user = _user(request)
    context = {
        "password_form": password_form or PasswordChangeForm(user),
        "token_form": token_form or TokenCreateForm(),
        "delete_form": delete_form or AccountDeleteForm(user=user),
        "tokens": list(api_tokens_of(user_id=user.pk)),
        "new_key": new_key,
    }
    response = render(request, "accounts/account.html", context, status=status)
    response["Cache-Control"] = "no-store"  # may show a new key
    return response


@login_required
def account(request: HttpRequest) -> HttpResponse:
    return _account_page(request)


@login_required
@require_POST
def password_change(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    form = PasswordChangeForm(user, request.POST)
    if not form.is_valid():
        return _account_page(request, password_form=form, status=400)
    form.save()
    update_session_auth_hash(request, user)
    ended = user_sessions_end(user_id=user.pk, keep=request.session.session_key)
    logger.info("User %s changed their password; %d other sessions ended", user.pk, ended)
    messages.success(request, "Password changed. You were logged out everywhere else.")
    return redirect("accounts:account")


@login_required
@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    form = TokenCreateForm(request.POST)
    if not form.is_valid():
        return _account_page(request, token_form=form, status=400)
    issued = api_token_create(user_id=_user(request).pk, name=form.cleaned_data["name"])
    return _account_page(request, new_key=issued.key, status=201)


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    if not api_token_revoke(user_id=_user(request).pk, token_id=token_id):
        raise Http404("No such active token.")
    messages.success(request, "Token revoked.")
    return redirect("accounts:account")


@login_required
@require_POST
def token_rotate(request: HttpRequest, token_id: int) -> HttpResponse:
    issued = api_token_rotate(user_id=_user(request).pk, token_id=token_id)
    if issued is None:
        raise Http404("No such active token.")
    return _account_page(request, new_key=issued.key, status=201)


@login_required
@require_POST
def account_delete_view(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    form = AccountDeleteForm(request.POST, user=user)
    if not form.is_valid():
        return _account_page(request, delete_form=form, status=400)
    account_delete(user=user)
    logout(request)
    messages.success(request, "Your account and everything in it were deleted.")
    return redirect("home")
