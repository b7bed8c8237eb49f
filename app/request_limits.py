"""A request body larger than any form of the site is refused before anything reads it (the
host's router refuses it too; this guards the app wherever it runs)."""

from pyramid.response import Response

MAX_BODY = 64 * 1024


def body_limit_tween_factory(handler, registry):
    limit = int(registry.settings.get("request.max_body", MAX_BODY))

    def body_limit_tween(request):
        if (request.content_length or 0) > limit:
            return Response(
                f"The request is larger than {limit} bytes.\n",
                status=413,
                content_type="text/plain",
            )
        return handler(request)

    return body_limit_tween


def includeme(config):
    from pyramid.tweens import INGRESS

    config.add_tween("app.request_limits.body_limit_tween_factory", under=INGRESS)
