"""Admin scoping by organization, and the Organization admin.

The admin serves two kinds of staff users: superusers, who see everything, and organization admins (staff
users with an ADMIN membership), who see and change only what belongs to the organizations they administer.
A staff user without an ADMIN membership sees nothing here. Django's per-model permissions are not used
for organization admins: the membership is what grants access, checked in the queryset, in every
`has_*_permission` and on each object.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin
from django.db.models import Count, Model, QuerySet
from django.http import HttpRequest

from organizations.models import Membership, Organization

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
