from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower

from core.ids import new_id

TRIAL_DAYS = 14


class Organization(models.Model):
    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set once, by the first MCP server the organization creates (a conditional update).
    trial_started_at = models.DateTimeField(null=True, blank=True)
    trial_ends_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        ADMIN = "ADMIN", "Admin"
        MEMBER = "MEMBER", "Member"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "organization"], name="unique_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"


GROUP_NAME_MAX = 100
GROUP_DESCRIPTION_MAX = 1000


class Group(models.Model):
    """Members of an organization, named: a server granted to a group may be used by each of its members."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="groups")
    name = models.CharField(max_length=GROUP_NAME_MAX)
    description = models.TextField(max_length=GROUP_DESCRIPTION_MAX, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # Names are told apart as people read them: "Support" and "support" are one group.
            models.UniqueConstraint(models.F("organization"), Lower("name"), name="unique_group_name_per_org"),
        ]

    def __str__(self) -> str:
        return self.name


class GroupMembership(models.Model):
    """A member of an organization in one of its groups. It hangs on the organization membership, so a person who
    leaves the organization leaves its groups with it."""

    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="memberships")
    # Indexed below, led by the membership.
    membership = models.ForeignKey(
        Membership, on_delete=models.CASCADE, related_name="group_memberships", db_index=False
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "group member"
        constraints = [models.UniqueConstraint(fields=["group", "membership"], name="unique_group_membership")]
        # "Which groups is this person in": the access rule's lookup, led by the membership.
        indexes = [models.Index(fields=["membership", "group"], name="group_membership_by_member")]

    def __str__(self) -> str:
        return f"{self.membership_id} in {self.group_id}"


class ApiKey(models.Model):
    """A bearer key. The full key is shown once; only its SHA-256 is stored, found by its prefix."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True)
    hashed_key = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
