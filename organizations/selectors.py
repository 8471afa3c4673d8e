from __future__ import annotations

import uuid
from collections.abc import Sequence

from django.contrib.auth.models import User
from django.db.models import Count, QuerySet

from core.errors import NotFound, ValidationError
from organizations.models import Group, GroupMembership, Membership, Organization

_MAX_ID = 2**63 - 1  # the largest integer primary key any supported database stores


def organization_get_for_admin(*, user: User, organization_id: str) -> Organization:
    """The organization if `user` is one of its admins; a missing org and a non-admin look alike (404)."""
    try:
        org_uuid = uuid.UUID(organization_id)
    except ValueError:
        raise NotFound("Organization not found.") from None
    organization = Organization.objects.filter(
        pk=org_uuid, memberships__user=user, memberships__role=Membership.Role.ADMIN
    ).first()
    if organization is None:
        raise NotFound("Organization not found.")
    return organization


def organization_get_for_member(*, user: User, organization_id: str) -> tuple[Organization, bool]:
    """The organization and whether `user` is one of its admins, if `user` is a member at all (else 404)."""
    try:
        org_uuid = uuid.UUID(organization_id)
    except ValueError:
        raise NotFound("Organization not found.") from None
    membership = Membership.objects.select_related("organization").filter(organization_id=org_uuid, user=user).first()
    if membership is None:
        raise NotFound("Organization not found.")
    return membership.organization, membership.role == Membership.Role.ADMIN


# --- Groups ---------------------------------------------------------------------------------------------------------


def _with_member_count(groups: QuerySet[Group]) -> QuerySet[Group]:
    return groups.annotate(member_count=Count("memberships"))


def group_get(*, organization: Organization, group_id: str | uuid.UUID) -> Group:
    """One group of `organization`, with `member_count`; a malformed id, another org's and a missing one look alike
    (404)."""
    try:
        group_uuid = group_id if isinstance(group_id, uuid.UUID) else uuid.UUID(group_id)
    except ValueError:
        raise NotFound("Group not found.") from None
    group = _with_member_count(Group.objects.filter(organization=organization, pk=group_uuid)).first()
    if group is None:
        raise NotFound("Group not found.")
    return group


def groups_page(*, organization: Organization, limit: int, cursor: str | None) -> tuple[list[Group], str | None]:
    """Newest first, `limit` at a time after the `cursor` id, each with `member_count`: one query."""
    groups = _with_member_count(Group.objects.filter(organization=organization)).order_by("-id")
    if cursor:
        try:
            groups = groups.filter(pk__lt=uuid.UUID(cursor))
        except ValueError:
            raise ValidationError("cursor", "is not a valid cursor (use pagination.nextCursor).") from None
    rows = list(groups[: limit + 1])
    if len(rows) > limit:
        return rows[:limit], str(rows[limit - 1].pk)
    return rows, None


def group_members_page(*, group: Group, limit: int, cursor: str | None) -> tuple[list[GroupMembership], str | None]:
    """The group's members, the latest added first, with their user and role: one query."""
    members = GroupMembership.objects.filter(group=group).select_related("membership__user").order_by("-id")
    if cursor:
        if not (cursor.isascii() and cursor.isdigit()) or int(cursor) > _MAX_ID:
            raise ValidationError("cursor", "is not a valid cursor (use pagination.nextCursor).")
        members = members.filter(pk__lt=int(cursor))
    rows = list(members[: limit + 1])
    if len(rows) > limit:
        return rows[:limit], str(rows[limit - 1].pk)
    return rows, None


def groups_of_organization(*, organization_id: uuid.UUID, group_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Group]:
    """Those of `group_ids` that are groups of the organization, by id: one query whatever their number."""
    groups = Group.objects.filter(organization_id=organization_id, pk__in=list(group_ids))
    return {group.pk: group for group in groups}


def member_user_id_by_email(*, organization: Organization, email: str) -> int | None:
    """The user id of the organization's member with this email (case-insensitive), or None."""
    if not email.isprintable():  # control characters and lone surrogates: no one's email, and not for a query
        return None
    value: int | None = (
        Membership.objects.filter(organization=organization, user__email__iexact=email.strip())
        .order_by("user_id")
        .values_list("user_id", flat=True)
        .first()
    )
    return value
