"""Club admins who manage events."""

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .meta import Base

_hasher = PasswordHasher()


class Wrangler(Base):
    __tablename__ = "wranglers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), nullable=False, unique=True)
    password_hash: Mapped[str] = mapped_column(String(200), nullable=False)
    # Each session remembers the generation it was opened in; raising it ends them all.
    session_generation: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default="0"
    )

    def set_password(self, password: str) -> None:
        self.password_hash = _hasher.hash(password)

    def end_sessions(self) -> None:
        self.session_generation = (self.session_generation or 0) + 1

    def verify_password(self, password: str) -> bool:
        """Only reads: a login verifies outside the request's write transaction."""
        try:
            return _hasher.verify(self.password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self) -> bool:
        return _hasher.check_needs_rehash(self.password_hash)

    def check_password(self, password: str) -> bool:
        ok = self.verify_password(password)
        if ok and self.needs_rehash():
            self.set_password(password)
        return ok
