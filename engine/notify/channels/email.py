"""`email`: one message through SMTP (smtplib), plain text with an HTML alternative.

The session goes by hand (MAIL, RCPT each, DATA) rather than `send_message`, for two reasons:
the answer line is the server's own reply to DATA (`250 2.0.0 Ok: queued as ...`), and a
message some recipients refused is still delivered to the others, so retrying it would send it
twice to them; the refused ones are named in the answer line instead.

Failures: a 4xx reply, a refused or dropped connection, a timeout: `TemporaryFailure`. A 5xx
reply (a refused sender, every recipient refused, DATA refused, authentication failed with 535),
a server without STARTTLS or AUTH when the config asks for them, a certificate that does not
verify: `PermanentFailure`. The password never appears in a message.
"""

from __future__ import annotations

import html
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from pydantic import SecretStr

from engine.config import SmtpConfig
from engine.errors import PermanentFailure, StepFailed, TemporaryFailure
from engine.notify.channels import text
from engine.notify.notice import Notice
from engine.transport import Secrets, causes, tls_context


def build_message(notice: Notice, sender: str, to: list[str]) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = text.title(notice)
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Date"] = format_datetime(notice.sent_at)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a pager
    # quoted-printable: 7-bit clean whatever the alert says, so no server needs 8BITMIME
    message.set_content(text.plain(notice), cte="quoted-printable")
    message.add_alternative(html_body(notice), subtype="html", cte="quoted-printable")
    return message


def html_body(notice: Notice) -> str:
    rows = []
    for row in text.fields(notice):
        value = html.escape(row.value)
        if row.key == "link":
            value = f'<a href="{value}">{html.escape(text.link_text(notice))}</a>'
        rows.append(f'<tr><th align="left" valign="top">{html.escape(row.label)}</th><td>{value}</td></tr>')
    title = html.escape(text.title(notice))
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>\n'
        f'<body><h2>{title}</h2>\n<table cellpadding="4">\n' + "\n".join(rows) + "\n</table></body></html>\n"
    )


def _reply(code: int, reply: bytes | str) -> str:
    words = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return f"{code} {' '.join(words.split())}".strip()


def _by_code(code: int, message: str) -> StepFailed:
    return TemporaryFailure(message) if 400 <= code < 500 or code < 0 else PermanentFailure(message)


class EmailChannel:
    kind = "email"

    def __init__(
        self, name: str, smtp: SmtpConfig, sender: str, to: list[str], *, password: SecretStr | None = None
    ) -> None:
        self.name = name
        self._smtp = smtp
        self._sender = sender
        self._to = list(to)
        self._password = password
        self._secrets = Secrets(password)
        self._where = f"channel {name}: smtp {smtp.host}:{smtp.port}"

    def send(self, notice: Notice) -> str:
        message = build_message(notice, self._sender, self._to)
        try:
            return self._deliver(message)
        except smtplib.SMTPResponseException as exc:
            raise _by_code(
                exc.smtp_code, self._say(f"answered {_reply(exc.smtp_code, exc.smtp_error)}")
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentFailure(self._say(f"does not support what the config asks: {exc}")) from None
        except smtplib.SMTPServerDisconnected as exc:
            if any(isinstance(cause, TimeoutError) for cause in causes(exc)):  # smtplib's word for a timeout
                raise TemporaryFailure(self._say(f"timed out after {self._timeout:g}s")) from None
            raise TemporaryFailure(self._say(f"closed the connection: {exc}")) from None
        except ssl.SSLCertVerificationError as exc:
            raise PermanentFailure(self._say(f"TLS certificate not accepted: {exc.verify_message}")) from None
        except TimeoutError:
            raise TemporaryFailure(self._say(f"timed out after {self._timeout:g}s")) from None
        except smtplib.SMTPException as exc:  # e.g. no authentication method both sides know
            raise PermanentFailure(self._say(str(exc))) from None
        except OSError as exc:  # refused, reset, unreachable, a name that does not resolve, TLS cut short
            doing = (
                "cannot connect" if isinstance(exc, ConnectionRefusedError | socket.gaierror) else "failed"
            )
            raise TemporaryFailure(self._say(f"{doing} ({exc.strerror or exc})")) from None

    @property
    def _timeout(self) -> float:
        return self._smtp.timeout.total_seconds()

    def _say(self, what: str) -> str:
        return self._secrets.scrub(f"{self._where} {what}")

    def _connect(self) -> smtplib.SMTP:
        smtp = self._smtp
        if smtp.tls:
            return smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=self._timeout, context=tls_context(True))
        return smtplib.SMTP(smtp.host, smtp.port, timeout=self._timeout)

    def _deliver(self, message: EmailMessage) -> str:
        with self._connect() as session:
            session.ehlo()
            if self._smtp.starttls and not self._smtp.tls:
                session.starttls(context=tls_context(True))
                session.ehlo()
            if self._smtp.user:
                password = self._password.get_secret_value() if self._password else ""
                session.login(self._smtp.user, password)
            code, reply = session.mail(self._sender)
            if code != 250:
                raise _by_code(code, self._say(f"refused the sender: {_reply(code, reply)}"))
            refused: dict[str, str] = {}
            for recipient in self._to:
                code, reply = session.rcpt(recipient)
                if code not in (250, 251):
                    refused[recipient] = _reply(code, reply)
            if len(refused) == len(self._to):
                session.rset()
                every = "; ".join(f"{who}: {why}" for who, why in refused.items())
                temporary = any(why.startswith("4") for why in refused.values())
                problem = self._say(f"refused every recipient: {every}")
                raise TemporaryFailure(problem) if temporary else PermanentFailure(problem)
            # CRLF line ends, as send_message writes them: data() sends bytes as they are
            code, reply = session.data(message.as_bytes(policy=message.policy.clone(linesep="\r\n")))
            if code != 250:
                raise _by_code(code, self._say(f"refused the message: {_reply(code, reply)}"))
            answer = _reply(code, reply)
            if refused:
                answer += " (refused: " + "; ".join(f"{who}: {why}" for who, why in refused.items()) + ")"
            return answer
