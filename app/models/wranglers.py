"""Club admins who manage events."""

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .meta import Base

# Production's costs are argon2-cffi's defaults (RFC 9106's low-memory profile: 3 passes over
# 64 MiB in 4 lanes). Only testing.ini lowers them. A hash carries its own costs, so it verifies
# whatever the costs are now, and check_password redoes it at the current ones.
_hasher = PasswordHasher()
COST_SETTINGS = {
    "time_cost": "security.argon2_time_cost",
    "memory_cost": "security.argon2_memory_cost",  # KiB
    "parallelism": "security.argon2_parallelism",
}


def configure_hasher(settings) -> None:
    """Hash new passwords at the ini's argon2 costs; production's where the ini names none. Called
    where the settings are read: app.security.includeme and initialize_RandoPony_db."""
    global _hasher
    costs = {
        field: int(settings.get(key, getattr(PasswordHasher(), field)))
        for field, key in COST_SETTINGS.items()
    }
    _hasher = PasswordHasher(**costs)


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
