"""Admin scoping by organization, the Organization admin, and the Group admin.

The admin serves two kinds of staff users: superusers, who see everything, and organization admins (staff
users with an ADMIN membership), who see and change only what belongs to the organizations they administer.
A staff user without an ADMIN membership sees nothing here. Django's per-model permissions are not used
for organization admins: the membership is what grants access, checked in the queryset, in every
`has_*_permission` and on each object.
"""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Count, Model, QuerySet
from django.http import Http404, HttpRequest

from core.errors import ValidationError
from organizations.models import Group, GroupMembership, Membership, Organization
from organizations.services import (
    group_check,
    group_create,
    group_delete,
    group_member_add,
    group_member_remove,
    group_update,
)

_CACHE_ATTRIBUTE = "_admin_organization_ids"


def admin_organization_ids(request: HttpRequest) -> frozenset[uuid.UUID] | None:
    """The organizations `request.user` administers; None for a superuser (every organization).

    Read once per request. An inactive or non-staff user administers nothing here.
    """
    user = request.user
    if not (user.is_active and user.is_staff):
        return frozenset()
    if user.is_superuser:
        return None
    cached: frozenset[uuid.UUID] | None = getattr(request, _CACHE_ATTRIBUTE, None)
    if cached is None:
        cached = frozenset(
            Membership.objects.filter(user_id=user.pk, role=Membership.Role.ADMIN).values_list(
                "organization_id", flat=True
            )
        )
        setattr(request, _CACHE_ATTRIBUTE, cached)
    return cached


def administers(request: HttpRequest, organization_id: uuid.UUID | None) -> bool:
    """Whether `request.user` may manage what belongs to `organization_id`."""
    ids = admin_organization_ids(request)
    return ids is None or (organization_id is not None and organization_id in ids)


def administers_any(request: HttpRequest) -> bool:
    ids = admin_organization_ids(request)
    return ids is None or bool(ids)


class OrganizationScopedAdmin(admin.ModelAdmin):
    """A ModelAdmin whose rows belong to an organization through `organization_path`.

    Subclasses say how to reach the organization from a row (`organization_path` for querysets,
    `organization_id_of` for one object) and whether adding and deleting are allowed at all.
    """

    organization_path = "organization"
    allow_add = False
    allow_delete = False

    def organization_id_of(self, obj: Any) -> uuid.UUID | None:
        value: uuid.UUID | None = obj.organization_id
        return value

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        ids = admin_organization_ids(request)
        if ids is None:
            return queryset
        return queryset.filter(**{f"{self.organization_path}__in": ids})

    def _allowed(self, request: HttpRequest, obj: Model | None) -> bool:
        if obj is None:
            return administers_any(request)
        return administers(request, self.organization_id_of(obj))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return administers_any(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.allow_add and administers_any(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.allow_delete and self._allowed(request, obj)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    raw_id_fields = ("user",)
    verbose_name_plural = "Members"

    def _superuser(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None or administers(request, obj.pk)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._superuser(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._superuser(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._superuser(request)


@admin.register(Organization)
class OrganizationAdmin(OrganizationScopedAdmin):
    """Superusers manage organizations and who administers them; an organization admin sees its own, read-only."""

    organization_path = "pk"
    list_display = ("name", "member_count", "trial_ends_at", "created_at")
    search_fields = ("name",)
    fields = ("name", "trial_started_at", "trial_ends_at", "created_at")
    readonly_fields = ("trial_started_at", "trial_ends_at", "created_at")
    inlines = (MembershipInline,)

    def organization_id_of(self, obj: Any) -> uuid.UUID | None:
        value: uuid.UUID | None = obj.pk
        return value

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).annotate(member_count=Count("memberships"))

    @admin.display(description="Members", ordering="member_count")
    def member_count(self, obj: Organization) -> int:
        return int(getattr(obj, "member_count", 0))

    def _superuser(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._superuser(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._superuser(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._superuser(request)


# --- Groups ---------------------------------------------------------------------------------------------------------


class GroupAdminForm(forms.ModelForm):
    """Collects a group's fields; the services decide (`group_check` says here what a save would refuse)."""

    class Meta:
        model = Group
        fields = ("organization", "name", "description")

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        organization = data.get("organization") or getattr(self.instance, "organization", None)
        if organization is not None and "name" in data:
            try:
                group_check(
                    organization_id=organization.pk,
                    name=data["name"],
                    description=data.get("description") or "",
                    group_id=self.instance.pk if self.instance._state.adding is False else None,
                )
            except ValidationError as error:
                self.add_error(error.field if error.field in self.fields else None, error.message)
        return data


def _member_label(membership: Membership) -> str:
    return f"{membership.user.email} ({membership.role.lower()})"


class GroupMembershipInline(admin.TabularInline):
    """A group's members: added and removed (through the services), never changed in place."""

    model = GroupMembership
    extra = 0
    fields = ("membership", "created_at")
    readonly_fields = ("created_at",)
    verbose_name = "member"
    verbose_name_plural = "Members"

    def _allowed(self, request: HttpRequest, obj: Group | None) -> bool:
        return administers_any(request) if obj is None else administers(request, obj.organization_id)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a row is one person in the group: remove it and add another

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).select_related("membership__user").order_by("-id")

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        formset = super().get_formset(request, obj, **kwargs)
        field = formset.form.base_fields.get("membership")
        if isinstance(field, forms.ModelChoiceField) and obj is not None:
            # The group's organization's members only, by email.
            field.queryset = (
                Membership.objects.filter(organization_id=obj.organization_id)
                .select_related("user")
                .order_by("user__email")
            )
            field.label_from_instance = _member_label  # type: ignore[method-assign,assignment]
            for attribute in ("can_add_related", "can_change_related", "can_delete_related", "can_view_related"):
                setattr(field.widget, attribute, False)
        return formset


@admin.register(Group)
class GroupAdmin(OrganizationScopedAdmin):
    """An organization's groups and their members; every save goes through the services the API uses."""

    allow_add = True
    allow_delete = True
    form = GroupAdminForm
    list_display = ("name", "organization", "member_count", "created_at")
    list_filter = (("organization", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("name", "description")
    list_select_related = ("organization",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).annotate(member_count=Count("memberships"))

    @admin.display(description="Members", ordering="member_count")
    def member_count(self, obj: Group) -> int:
        return int(getattr(obj, "member_count", 0))

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Group:
        """Another organization's group, a malformed id and a missing one look alike: 404."""
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404("No such group.")
        return obj

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("organization",) if obj is not None else ()

    def get_inlines(self, request: HttpRequest, obj: Any) -> list[type[admin.options.InlineModelAdmin]]:
        return [] if obj is None else [GroupMembershipInline]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "organization":
            ids = admin_organization_ids(request)
            organizations = Organization.objects.order_by("name")
            kwargs["queryset"] = organizations if ids is None else organizations.filter(pk__in=ids)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        ids = admin_organization_ids(request)
        if ids is not None and len(ids) == 1 and "organization" not in initial:
            initial["organization"] = str(next(iter(ids)))
        return initial

    def save_model(self, request: HttpRequest, obj: Group, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if not change:
            if not administers(request, data["organization"].pk):  # the field's choices already say so
                raise Http404("No such organization.")
            group = group_create(
                organization=data["organization"], name=data["name"], description=data.get("description") or ""
            )
            for model_field in Group._meta.concrete_fields:
                setattr(obj, model_field.attname, getattr(group, model_field.attname))
            obj._state.adding = False
            return
        group_update(group=obj, name=data["name"], description=data.get("description") or "")

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """Members added and removed through the services (what changed is recorded as Django's history expects)."""
        group = form.instance
        formset.save(commit=False)
        for row in formset.deleted_objects:
            group_member_remove(group=group, user_id=row.membership.user_id)
        formset.new_objects = [
            group_member_add(group=group, user_id=row.membership.user_id) for row in formset.new_objects
        ]
        formset.changed_objects = []

    def delete_model(self, request: HttpRequest, obj: Group) -> None:
        group_delete(group=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Group]) -> None:
        for group in queryset:
            group_delete(group=group)

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        # Memberships and access grants go with their group (not the members, nor the servers); they need no
        # permission of their own.
        deleted, counts, _, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, set(), protected
