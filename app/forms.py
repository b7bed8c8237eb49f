"""Form schemas (colander) and the small helper views use to validate a POST."""

import unicodedata

import colander

from .models.riders import BIKE_TYPES

NAME_MAX = 50
EMAIL_MAX = 254
COMMENT_MAX = 500


def strip(value):
    """Trimmed, and in one Unicode form (NFC), so 'É' typed or pasted is the same letter."""
    return unicodedata.normalize("NFC", value.strip()) if isinstance(value, str) else value


def lower(value):
    return strip(value).lower() if isinstance(value, str) else value


# Control characters, and the line and paragraph separators: none belongs in a one-line field
# (and each has broken a spreadsheet or an email header somewhere).
NOT_IN_ONE_LINE = frozenset({"Cc", "Zl", "Zp"})


def no_control_characters(node, value):
    if any(unicodedata.category(c) in NOT_IN_ONE_LINE for c in value):
        raise colander.Invalid(node, "Please remove line breaks and control characters")


def text(title, max_length, missing=colander.required, validator=None, name=""):
    validators = [colander.Length(max=max_length, max_err=f"At most {max_length} characters")]
    if validator:
        validators.append(validator)
    return colander.SchemaNode(
        colander.String(),
        name=name,
        title=title,
        preparer=strip,
        validator=colander.All(*validators),
        missing=missing,
        missing_msg="Required",
    )


def email_node(title="Email address"):
    return colander.SchemaNode(
        colander.String(),
        title=title,
        preparer=lower,
        validator=colander.All(
            colander.Length(max=EMAIL_MAX, max_err=f"At most {EMAIL_MAX} characters"),
            colander.Email(msg="That is not a valid email address"),
        ),
        missing_msg="Required",
    )


def email_list_validator(node, value):
    addresses = [a.strip() for a in value.split(",") if a.strip()]
    if not addresses:
        raise colander.Invalid(node, "At least one email address")
    check = colander.Email()
    for address in addresses:
        try:
            check(node, address)
        except colander.Invalid as error:
            raise colander.Invalid(node, f"{address!r} is not a valid email address") from error


class RiderSchema(colander.MappingSchema):
    email = email_node()
    first_name = text("First name", NAME_MAX, validator=no_control_characters)
    last_name = text("Last name", NAME_MAX, validator=no_control_characters)
    comment = text("Comment", COMMENT_MAX, missing=None, validator=no_control_characters)


def brevet_rider_schema(info_question: str | None):
    schema = RiderSchema()
    schema.add(
        colander.SchemaNode(
            colander.String(),
            name="bike_type",
            title="Bike type",
            validator=colander.OneOf(list(BIKE_TYPES), msg_err="Choose a bike type from the list"),
            missing_msg="Choose a bike type",
        )
    )
    if info_question:
        schema.add(
            text(info_question, COMMENT_MAX, name="info_answer", validator=no_control_characters)
        )
    return schema


def populaire_rider_schema(distances: list[str]):
    schema = RiderSchema()
    if len(distances) > 1:
        schema.add(
            colander.SchemaNode(
                colander.String(),
                name="distance",
                title="Distance",
                validator=colander.OneOf(distances, msg_err="Choose a distance from the list"),
                missing_msg="Choose a distance",
            )
        )
    return schema


class FormResult:
    """What a view needs after validating: the clean values or the errors per field."""

    def __init__(self, values: dict, errors: dict[str, str], submitted: dict):
        self.values = values
        self.errors = errors
        self.submitted = submitted

    @property
    def ok(self) -> bool:
        return not self.errors


def validate(schema, post) -> FormResult:
    submitted = {child.name: post.get(child.name, "") for child in schema.children}
    cstruct = {
        k: (v if isinstance(v, str) and v.strip() else colander.null) for k, v in submitted.items()
    }
    try:
        return FormResult(schema.deserialize(cstruct), {}, submitted)
    except colander.Invalid as invalid:
        errors = {path.split(".")[-1]: message for path, message in invalid.asdict().items()}
        return FormResult({}, errors, submitted)
