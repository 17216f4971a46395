from rest_framework.permissions import BasePermission

from .models import is_expert


class IsExpert(BasePermission):
    message = "Only experts and staff can review photos."

    def has_permission(self, request, view):
        return is_expert(request.user)
