"""What the admin pages share: the form page and the "are you sure" page before a delete."""

from .events import page


def form_page(request, *, heading, fields, form, submit, cancel):
    """An add or edit form; 400 when it comes back with errors."""
    return page(
        request,
        "admin/form.jinja2",
        400 if form.errors else 200,
        heading=heading,
        fields=fields,
        form=form,
        submit=submit,
        cancel=cancel,
    )


def confirm_delete(request, *, what, cancel, details=None, refusal=None):
    """GET on a delete URL: what will go, and a button that POSTs. With a refusal, only why not."""
    return page(
        request,
        "admin/confirm_delete.jinja2",
        what=what,
        cancel=cancel,
        details=details,
        refusal=refusal,
    )
