"""Wranglers' pages for the wranglers themselves: list, add, edit, delete."""

from pyramid.httpexceptions import HTTPFound, HTTPNotFound
from pyramid.view import view_config
from sqlalchemy import select

from .. import admin_forms, forms
from ..models import Wrangler
from ..security import ADMIN
from .admin_pages import confirm_delete, form_page

CANNOT_DELETE_SELF = "You cannot delete yourself; ask another wrangler to do it."


def get_wrangler(request) -> Wrangler:
    wrangler = request.db.get(Wrangler, int(request.matchdict["id"]))
    if wrangler is None:
        raise HTTPNotFound("There is no such wrangler.")
    return wrangler


@view_config(route_name="admin.wranglers", permission=ADMIN, renderer="admin/list.jinja2")
def wrangler_list(request):
    wranglers = request.db.scalars(select(Wrangler).order_by(Wrangler.email)).all()
    return {
        "heading": "Wranglers",
        "new_url": request.route_url("admin.wranglers.new"),
        "new_label": "Add a wrangler",
        "columns": ["Email address", "Note"],
        "rows": [
            {
                "title": w.email,
                "url": request.route_url("admin.wranglers.edit", id=w.id),
                "cells": ["you" if w.id == request.identity.id else ""],
                "edit": request.route_url("admin.wranglers.edit", id=w.id),
                "delete": request.route_url("admin.wranglers.delete", id=w.id),
            }
            for w in wranglers
        ],
    }


def wrangler_form(request, wrangler):
    new = wrangler is None
    myself = not new and wrangler.id == request.identity.id
    form = forms.FormResult({}, {}, {"email": wrangler.email} if wrangler else {})
    if request.method == "POST":
        form = forms.validate(admin_forms.wrangler_schema(new), request.POST)
        if form.ok:
            email = form.values["email"]
            query = select(Wrangler.id).where(Wrangler.email == email)
            if not new:
                query = query.where(Wrangler.id != wrangler.id)
            if request.db.scalar(query) is not None:
                form.errors["email"] = f"{email} is a wrangler already"
        if form.ok:
            if new:
                wrangler = Wrangler(email=email)
                request.db.add(wrangler)
            wrangler.email = email
            if form.values["password"]:
                wrangler.set_password(form.values["password"])
                # A stolen session must not outlive the password it was opened with; the
                # wrangler who changed it stays logged in here.
                wrangler.end_sessions()
                if myself:
                    request.session["generation"] = wrangler.session_generation
            request.db.flush()
            request.session.flash(f"Wrangler {email} {'added' if new else 'saved'}.", "success")
            return HTTPFound(request.route_url("admin.wranglers"))
        # A password never goes back into the page.
        form.submitted["password"] = ""
    return form_page(
        request,
        heading="Add a wrangler" if new else f"Edit wrangler {wrangler.email}",
        fields=admin_forms.wrangler_fields(new),
        form=form,
        submit="Save",
        cancel=request.route_url("admin.wranglers"),
    )


@view_config(route_name="admin.wranglers.new", permission=ADMIN)
def wrangler_new(request):
    return wrangler_form(request, None)


@view_config(route_name="admin.wranglers.edit", permission=ADMIN)
def wrangler_edit(request):
    return wrangler_form(request, get_wrangler(request))


@view_config(route_name="admin.wranglers.delete", permission=ADMIN)
def wrangler_delete(request):
    wrangler = get_wrangler(request)
    myself = wrangler.id == request.identity.id
    if request.method == "POST":
        if myself:
            request.session.flash(CANNOT_DELETE_SELF, "error")
        else:
            request.db.delete(wrangler)
            request.session.flash(f"Wrangler {wrangler.email} deleted.", "success")
        return HTTPFound(request.route_url("admin.wranglers"))
    return confirm_delete(
        request,
        what=f"wrangler {wrangler.email}",
        details="They will no longer be able to log in.",
        cancel=request.route_url("admin.wranglers"),
        refusal=CANNOT_DELETE_SELF if myself else None,
    )
