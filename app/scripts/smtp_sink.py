"""randopony_smtp_sink [--port 8025] [--maildir DIR]: a local SMTP server (aiosmtpd) that accepts
every message, prints it, and optionally keeps each one as a file. For development: no mail
leaves the machine."""

import argparse
import asyncio
import email
import email.policy
import sys
from datetime import datetime
from pathlib import Path

from aiosmtpd.controller import Controller


class PrintingHandler:
    def __init__(self, maildir: Path | None, out=sys.stdout):
        self.maildir = maildir
        self.out = out
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        stamp = datetime.now().strftime("%H:%M:%S")
        print(
            f"\n----- mail #{self.count} received {stamp} -----\n"
            f"From: {envelope.mail_from}\nTo: {', '.join(envelope.rcpt_tos)}\n"
            f"Subject: {message['Subject']}\n\n{text.rstrip()}\n"
            f"----- end of mail #{self.count} -----",
            file=self.out,
            flush=True,
        )
        if self.maildir is not None:
            self.maildir.mkdir(parents=True, exist_ok=True)
            (self.maildir / f"{self.count:05d}.eml").write_bytes(envelope.content)
        return "250 Message accepted for delivery"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="randopony_smtp_sink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--maildir", type=Path, help="also keep each message as a .eml file here")
    args = parser.parse_args(argv)
    controller = Controller(PrintingHandler(args.maildir), hostname=args.host, port=args.port)
    controller.start()
    print(f"SMTP sink listening on {args.host}:{args.port}; mail is printed here.", flush=True)
    try:
        asyncio.run(asyncio.Event().wait())
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
