"""A real celery worker on the real SQLite broker delivers a sign-up's emails to a real SMTP
server, writes the rider list, and never sends an email twice."""

import csv

from sqlalchemy import select

from app.models import OutboundEmail
from app.tasks import send_email
from tests.factories import make_brevet


def sign_up(testapp, url, first="Ada", last="Lovelace", email="ada@example.org"):
    form = testapp.get(url + "/entry").forms[0]
    form["email"], form["first_name"], form["last_name"] = email, first, last
    form["bike_type"] = "single"
    return form.submit()


def test_sign_up_mail_is_delivered_by_the_worker(
    app_settings, db, smtp_server, start_worker, testapp
):
    port, mailbox = smtp_server
    app_settings["smtp.port"] = str(port)
    testapp.app.registry.settings["smtp.port"] = str(port)
    brevet = make_brevet(db, organizer_email="org1@example.com, org2@example.com")
    db.commit()
    url = f"/brevets/LM/200/{brevet.url_date}"
    worker = start_worker(app_settings)

    sign_up(testapp, url)
    messages = mailbox.wait_for(2)
    assert len(messages) == 2, worker.output()
    by_subject = {m["Subject"]: (to, m) for to, m, _ in messages}
    to, confirmation = by_subject[f"Pre-registration confirmation for {brevet.title}"]
    assert to == ["ada@example.org"]
    assert confirmation["Reply-To"] == "org1@example.com, org2@example.com"
    assert confirmation["From"] == "randopony@example.com"
    assert url in confirmation.get_body(("plain",)).get_content()
    to, notification = by_subject[f"Ada Lovelace has pre-registered for {brevet.title}"]
    assert sorted(to) == ["org1@example.com", "org2@example.com"]

    # The rider list follows the emails through the same worker.
    rider_list = app_settings["rider_lists_dir"] + f"/{brevet.uuid}.csv"
    assert worker.wait_for_output("update_rider_list"), worker.output()
    assert worker.wait_for_output("succeeded", timeout=60), worker.output()
    _wait_for_file(rider_list)
    with open(rider_list, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[1][:3] == ["Lovelace", "Ada", "ada@example.org"]

    db.expire_all()
    assert all(e.sent_at is not None for e in db.scalars(select(OutboundEmail)))


def test_a_retried_task_sends_no_second_email(app_settings, db, smtp_server, start_worker, testapp):
    port, mailbox = smtp_server
    app_settings["smtp.port"] = str(port)
    testapp.app.registry.settings["smtp.port"] = str(port)
    brevet = make_brevet(db)
    db.commit()
    worker = start_worker(app_settings)
    sign_up(testapp, f"/brevets/LM/200/{brevet.url_date}")
    assert len(mailbox.wait_for(2)) == 2
    first_id = db.scalars(select(OutboundEmail.id).order_by(OutboundEmail.id)).first()

    send_email.delay(first_id)  # as celery would on a redelivery
    assert worker.wait_for_output(f"outbox email {first_id} already sent"), worker.output()
    assert len(mailbox.messages) == 2


def test_email_whose_task_was_lost_is_sent_when_a_worker_starts(
    app_settings, db, smtp_server, start_worker
):
    port, mailbox = smtp_server
    app_settings["smtp.port"] = str(port)
    db.add(
        OutboundEmail(
            to_addrs="lost@example.org", subject="Queued while the broker was down", body="hi"
        )
    )
    db.commit()
    start_worker(app_settings)
    [(to, message, _)] = mailbox.wait_for(1)
    assert to == ["lost@example.org"]
    assert message["Subject"] == "Queued while the broker was down"


def test_smtp_down_then_up_is_retried_until_sent(app_settings, db, start_worker, testapp, tmp_path):
    from aiosmtpd.controller import Controller

    from tests.conftest import free_port
    from tests.integration.conftest import Mailbox

    port = free_port()
    app_settings["smtp.port"] = str(port)
    db.add(OutboundEmail(to_addrs="patient@example.org", subject="Retry me", body="hi"))
    db.commit()
    worker = start_worker(app_settings)
    assert worker.wait_for_output("Retry in"), worker.output()  # connection refused: retried
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        [(to, message, _)] = mailbox.wait_for(1, timeout=30)
        assert to == ["patient@example.org"]
    finally:
        controller.stop()
    assert worker.wait_for_output("] sent outbox email 1 to"), worker.output()
    db.expire_all()
    row = db.scalar(select(OutboundEmail))
    assert row.sent_at is not None and row.attempts >= 2


def _wait_for_file(path, timeout=60):
    import os
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not os.path.exists(path):
        time.sleep(0.05)
    assert os.path.exists(path), f"{path} never appeared"
