"""A request body larger than any form of the site is refused before anything reads it (the
host's router refuses it too; this guards the app wherever it runs), and so is a form in
another charset than UTF-8."""

from pyramid.response import Response

MAX_BODY = 64 * 1024
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def body_limit_tween_factory(handler, registry):
    limit = int(registry.settings.get("request.max_body", MAX_BODY))

    def body_limit_tween(request):
        if (request.content_length or 0) > limit:
            return Response(
                f"The request is larger than {limit} bytes.\n",
                status=413,
                content_type="text/plain",
            )
        if request.content_type in FORM_TYPES and request.charset != "UTF-8":
            # WebOb raises on reading such a form (even for its CSRF token): a 500 otherwise.
            return Response(
                "Forms are accepted in UTF-8 only, as this site's pages send them.\n",
                status=415,
                content_type="text/plain",
            )
        return handler(request)

    return body_limit_tween


def includeme(config):
    from pyramid.tweens import INGRESS

    config.add_tween("app.request_limits.body_limit_tween_factory", under=INGRESS)
