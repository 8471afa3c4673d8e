"""Admin forms for MCP servers. They collect input; the services validate and write.

No form here saves a model: the admin passes what the forms collected to `mcp_server_create`,
`mcp_server_update` and `mcp_tool_set_access_mode`, the services the API uses, and shows their
`ValidationError`s on the field they name (`serverUrl`, `headers[0].key`, ...).

Header values are write-only. A header row's value input is a password input that never renders a
value, the form never loads the stored value (its field is not the model's), and an existing header
left blank keeps its secret. The OAuth client credentials are write-only the same way: the secret and the private
key are inputs that never render a value, and only the client id is shown back.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, cast

from django import forms
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest

from core.errors import ValidationError
from mcp_servers.models import AccessMode, McpServer, McpServerHeader, McpTool
from mcp_servers.validation import (
    DISPLAY_NAME_MAX,
    SIGNING_ALGORITHMS,
    ClientCredentialsInput,
    HeaderInput,
    validate_headers,
)

# The contract's field names, as the services name them in a ValidationError, and the form fields they fill.
SERVER_FIELDS = {
    "displayName": "display_name",
    "serverUrl": "server_url",
    "everyoneInOrganizationCanAccess": "everyone_in_organization_can_access",
    "organization": "organization",
    "clientCredentials": "oauth_client_id",
    "clientCredentials.clientId": "oauth_client_id",
    "clientCredentials.clientSecret": "oauth_client_secret",
    "clientCredentials.privateKey": "oauth_private_key",
    "clientCredentials.signingAlgorithm": "oauth_signing_algorithm",
}
CLIENT_CREDENTIAL_FIELDS = ("oauth_client_id", "oauth_client_secret", "oauth_private_key", "oauth_signing_algorithm")
_HEADER_ERROR_FIELD = re.compile(
    r"^(?P<list>headers|setHeaders|removeHeaders)(?:\[(?P<index>\d+)\](?:\.(?P<part>key|value))?)?$"
)

Operation = Literal["create", "update"]


@dataclass(frozen=True)
class ServiceError:
    """A service's ValidationError, and which call raised it (the header indices depend on it)."""

    error: ValidationError
    operation: Operation

    @property
    def is_about_headers(self) -> bool:
        return _HEADER_ERROR_FIELD.match(self.error.field) is not None


class ServiceRejected(Exception):
    """A service refused a save; the change form is shown again with its message (see McpServerAdmin)."""

    def __init__(self, rejected: ServiceError) -> None:
        super().__init__(rejected.error.detail)
        self.rejected = rejected


_PENDING_ERROR = "_mcp_service_error"


def pending_error(request: HttpRequest) -> ServiceError | None:
    """The refusal the change form of this request is being shown again for, if any."""
    error: ServiceError | None = getattr(request, _PENDING_ERROR, None)
    return error


def set_pending_error(request: HttpRequest, rejected: ServiceError) -> None:
    setattr(request, _PENDING_ERROR, rejected)


@contextmanager
def service_call(operation: Operation) -> Iterator[None]:
    """Turn a service's ValidationError into ServiceRejected (the change form catches it and shows it)."""
    try:
        yield
    except ValidationError as exc:
        raise ServiceRejected(ServiceError(error=exc, operation=operation)) from exc


def _described(error: ValidationError) -> str:
    """A message for a place that does not name the field itself."""
    return f"{error.field}: {error.message}"


class McpServerAdminForm(forms.ModelForm):
    """The server's own fields. The organization field comes from the model (its choices are limited per user)."""

    display_name = forms.CharField(
        label="Display name",
        required=False,  # the service says what is wrong, in the API's words
        strip=False,
        widget=forms.TextInput(attrs={"class": "vTextField", "maxlength": DISPLAY_NAME_MAX, "autocomplete": "off"}),
        help_text=(
            "How people in the organization see this server (1 to 120 characters). The server label, which "
            "prefixes the tool names a model sees, is derived from it once, when the server is added."
        ),
    )
    server_url = forms.CharField(
        label="Server URL",
        required=False,
        strip=False,
        widget=forms.TextInput(
            attrs={"class": "vURLField", "placeholder": "https://mcp.example.com/mcp", "autocomplete": "off"}
        ),
        help_text=(
            "The server's MCP endpoint: an absolute http(s) URL, without credentials. Streamable HTTP and "
            "legacy SSE are both detected. Changing it re-syncs the tools and forgets any OAuth authorization."
        ),
    )
    everyone_in_organization_can_access = forms.BooleanField(
        label="Everyone in the organization can use it",
        required=False,
        initial=True,
        help_text="When unchecked, only organization admins and members given access can use this server's tools.",
    )

    oauth_client_id = forms.CharField(
        label="OAuth client id",
        required=False,
        widget=forms.TextInput(attrs={"class": "vTextField", "autocomplete": "off"}),
        help_text=(
            "For a server without a person in the loop (the MCP OAuth client-credentials extension): the client "
            "registered for this service at the server's authorization server. The service gets and renews its "
            "tokens itself. Give it with a secret or a private key; leave all blank to keep what is stored."
        ),
    )
    oauth_client_secret = forms.CharField(
        label="OAuth client secret",
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}, render_value=False),
        help_text="Sent with HTTP Basic authentication. Write-only: it is never shown again.",
    )
    oauth_private_key = forms.CharField(
        label="OAuth private key (PEM)",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 4, "autocomplete": "off", "spellcheck": "false"}),
        help_text="Instead of a secret: a PKCS#8 PEM key that signs private_key_jwt assertions. Write-only.",
    )
    oauth_signing_algorithm = forms.ChoiceField(
        label="Key algorithm",
        required=False,
        choices=[("", "RS256 (default)"), *((name, name) for name in SIGNING_ALGORITHMS)],
        help_text="The JWS algorithm of the private key.",
    )
    oauth_remove_client_credentials = forms.BooleanField(label="Remove the OAuth client credentials", required=False)

    # Set on the class the admin builds when a save was refused by a service.
    service_error: ClassVar[ServiceError | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        configured = getattr(self.instance, "client_credentials", None) if self.instance.pk else None
        if configured is not None and "oauth_client_id" in self.fields:
            self.fields["oauth_client_id"].help_text = (
                f"Configured: client “{configured.client_id}” ({configured.auth_method}). Enter a client id with a "
                "new secret or key to replace it; the stored secret or key is never shown."
            )

    def client_credentials(self) -> ClientCredentialsInput | None:
        """New credentials when any was entered (the service says what is missing), else None."""
        data = self.cleaned_data
        if not any(data.get(name) for name in CLIENT_CREDENTIAL_FIELDS):
            return None
        return ClientCredentialsInput(
            client_id=data.get("oauth_client_id") or "",
            client_secret=data.get("oauth_client_secret") or None,
            private_key=data.get("oauth_private_key") or None,
            signing_algorithm=data.get("oauth_signing_algorithm") or None,
        )

    class Meta:
        model = McpServer
        fields = ("organization", "display_name", "server_url", "everyone_in_organization_can_access")
        help_texts = {"organization": "The organization this server belongs to (one you administer)."}

    def _post_clean(self) -> None:
        # No model validation and no copying onto the instance: the service validates and writes.
        pass

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        rejected = self.service_error
        if rejected is not None and not rejected.is_about_headers:
            target = SERVER_FIELDS.get(rejected.error.field)
            if target is not None and target in self.fields:
                self.add_error(target, rejected.error.message)
            else:
                self.add_error(None, _described(rejected.error))
        return cleaned


class HeaderRowForm(forms.ModelForm):
    """One header: its name, and a write-only value (not the model's field, so the stored value is never loaded)."""

    new_value = forms.CharField(
        label="Value",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password", "class": "vTextField"}),
    )

    class Meta:
        model = McpServerHeader
        fields = ("key",)
        labels = {"key": "Name"}
        widgets = {"key": forms.TextInput(attrs={"placeholder": "X-Api-Key", "autocomplete": "off"})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["key"].required = False  # an empty name is the service's to report
        if self.is_existing:
            # The name of a stored header stays (delete it and add another to rename it).
            self.fields["key"].disabled = True
            self.fields["new_value"].widget.attrs["placeholder"] = "•••••••• stored: leave blank to keep"
        else:
            self.fields["new_value"].widget.attrs["placeholder"] = "value (write-only)"

    @property
    def is_existing(self) -> bool:
        return not self.instance._state.adding

    def _post_clean(self) -> None:
        pass

    @property
    def marked_for_deletion(self) -> bool:
        return bool(self.cleaned_data.get("DELETE")) if hasattr(self, "cleaned_data") else False


@dataclass
class HeaderPlan:
    """What the header rows ask for, in the shape the services take, with each entry's row for error messages.

    On create every filled row is a header. On update, `upserts` are new rows and stored headers given a new
    value (`set_headers`), `removals` the stored headers marked for deletion (`remove_headers`), and `merged`
    the rows in the order the service validates the resulting list.
    """

    upserts: list[tuple[HeaderInput, HeaderRowForm]] = field(default_factory=list)
    removals: list[tuple[str, HeaderRowForm]] = field(default_factory=list)
    merged: list[HeaderRowForm | None] = field(default_factory=list)

    @property
    def headers(self) -> list[HeaderInput]:
        return [header for header, _ in self.upserts]

    @property
    def removed_keys(self) -> list[str]:
        return [key for key, _ in self.removals]


_HEADER_FORMSET = "_mcp_header_formset"


def header_formset_of(request: HttpRequest) -> HeaderFormSet | None:
    """The header rows submitted with this request's change form: what the server's save sends to the service."""
    formset: HeaderFormSet | None = getattr(request, _HEADER_FORMSET, None)
    return formset


class HeaderFormSet(BaseInlineFormSet):
    # Both set on the class the admin builds for each request (HeaderInline.get_formset).
    service_error: ClassVar[ServiceError | None] = None
    request: ClassVar[HttpRequest | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.request is not None:
            setattr(self.request, _HEADER_FORMSET, self)

    @property
    def rows(self) -> list[HeaderRowForm]:
        return cast(list[HeaderRowForm], self.forms)

    def plan(self) -> HeaderPlan:
        plan = HeaderPlan()
        by_key: dict[str, HeaderRowForm | None] = {}
        for form in self.rows:
            if form.is_existing:
                by_key[form.instance.key.lower()] = form
        for form in self.rows:
            if not hasattr(form, "cleaned_data"):
                continue
            if form.is_existing:
                key = form.instance.key
                if form.marked_for_deletion:
                    plan.removals.append((key, form))
                    by_key.pop(key.lower(), None)
                elif form.cleaned_data.get("new_value"):
                    plan.upserts.append((HeaderInput(key=key, value=form.cleaned_data["new_value"]), form))
            elif form.has_changed() and not form.marked_for_deletion:
                key = form.cleaned_data.get("key") or ""
                value = form.cleaned_data.get("new_value") or ""
                if key or value:
                    plan.upserts.append((HeaderInput(key=key, value=value), form))
                    by_key[key.strip().lower()] = form
        plan.merged = list(by_key.values())
        return plan

    def clean(self) -> None:
        _check_rows_belong(self)
        self._check_names()
        # The service checks the headers (names, values, count); this only places its message.
        rejected = self.service_error
        if rejected is None or not rejected.is_about_headers:
            return
        match = _HEADER_ERROR_FIELD.match(rejected.error.field)
        assert match is not None
        row = self._row_for(match["list"], match["index"], rejected.operation)
        if row is not None and match["part"] is not None:
            row.add_error("new_value" if match["part"] == "value" else "key", rejected.error.message)
        elif row is not None:
            row.add_error(None, rejected.error.message)
        else:
            raise forms.ValidationError(_described(rejected.error))

    def _check_names(self) -> None:
        """The names the server would end up with, checked by the service's own rules: a new row named like a
        stored header is a duplicate here (the service would silently replace the stored value)."""
        rows: list[tuple[str, HeaderRowForm]] = []
        for form in self.rows:
            if not hasattr(form, "cleaned_data") or form.marked_for_deletion:
                continue
            if form.is_existing:
                rows.append((form.instance.key, form))
            elif form.has_changed() and (form.cleaned_data.get("key") or form.cleaned_data.get("new_value")):
                rows.append((form.cleaned_data.get("key") or "", form))
        try:
            validate_headers([HeaderInput(key=key, value="") for key, _ in rows])
        except ValidationError as exc:
            match = _HEADER_ERROR_FIELD.match(exc.field)
            if match is None or match["index"] is None or match["part"] != "key":
                raise forms.ValidationError(_described(exc)) from None
            rows[int(match["index"])][1].add_error("key", exc.message)

    def _row_for(self, listing: str, index: str | None, operation: Operation) -> HeaderRowForm | None:
        if index is None:
            return None
        position = int(index)
        plan = self.plan()
        rows: list[HeaderRowForm | None]
        if listing == "removeHeaders":
            rows = [form for _, form in plan.removals]
        elif listing == "setHeaders" or operation == "create":
            rows = [form for _, form in plan.upserts]
        else:
            rows = plan.merged
        return rows[position] if position < len(rows) else None


ACCESS_MODE_CHOICES = [
    (AccessMode.ALWAYS_ALLOW.value, "Always allow"),
    (AccessMode.NEEDS_APPROVAL.value, "Needs approval"),
    (AccessMode.BLOCKED.value, "Blocked"),
]


class McpToolAdminForm(forms.ModelForm):
    """A tool's access mode, in the admin's words (the tool's page; the server's rows add to it)."""

    class Meta:
        model = McpTool
        fields = ("access_mode",)
        help_texts = {
            "access_mode": (
                "Always allow: models may call it. Needs approval: a person confirms each call. "
                "Blocked: never offered to models."
            )
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "access_mode" in self.fields:
            self.fields["access_mode"].choices = ACCESS_MODE_CHOICES  # type: ignore[attr-defined]

    def _post_clean(self) -> None:
        pass  # the service validates and writes


class ToolRowForm(McpToolAdminForm):
    """A tool's access mode on its server's page, and a way to approve a changed definition without changing the
    mode."""

    mark_reviewed = forms.BooleanField(
        label="Approve definition",
        required=False,
        help_text=(
            "Approve the tool's current definition with the mode shown (a changed definition otherwise keeps "
            "an 'Always allow' tool at 'Needs approval'). Changing the mode approves it too."
        ),
    )

    def wants_decision(self) -> bool:
        if not hasattr(self, "cleaned_data") or self.instance._state.adding:
            return False
        return "access_mode" in self.changed_data or bool(self.cleaned_data.get("mark_reviewed"))

    @property
    def access_mode(self) -> AccessMode:
        return AccessMode(self.cleaned_data["access_mode"])


class ToolFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        _check_rows_belong(self)


def _check_rows_belong(formset: BaseInlineFormSet) -> None:
    """Every row the page was given must still be one of this server's (a model formset would otherwise take an
    unknown or foreign id for a new row)."""
    for form in formset.forms[: formset.initial_form_count()]:
        if form.instance._state.adding:
            raise forms.ValidationError(
                "A row no longer belongs to this server (it was deleted, or the page is stale): reload the page."
            )
