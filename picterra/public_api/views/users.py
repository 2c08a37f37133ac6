"""Who the API key is: `users/me/` (the client's `get_user_info`)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from picterra.public_api import serializers as public
from picterra.public_api.views.base import PublicView


class UserMeView(PublicView):
    @extend_schema(responses={200: public.UserInfoSerializer}, operation_id="users_me")
    def get(self, request):
        return Response(public.UserInfoSerializer(request.user, context={"organization": self.organization}).data)
