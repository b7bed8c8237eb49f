from setuptools import find_packages, setup

requires = [
    # the site
    "pyramid>=2.0",
    "pyramid_jinja2",
    "pyramid_tm",
    "pyramid_retry",
    "zope.sqlalchemy",
    "SQLAlchemy>=2.0,<2.1",
    "alembic",
    "waitress",
    "colander",
    "argon2-cffi",
    "celery[sqlalchemy]>=5.4",
    "openpyxl",
    "tzdata",
    # the host and the release machinery
    "aiohttp",
    "uvloop",
    "supervisor",
    "fabric>=3",
    "rich",
    # the panel parses XML-RPC from the network
    "defusedxml",
]

tests_require = [
    "pytest",
    "pytest-timeout",
    "webtest",
    "aiosmtpd",
    "playwright",
    "requests",
    "ruff",
    "hypothesis",
    "pytest-xdist",
]

setup(
    name="RandoPony",
    version="2026.1",
    description="Pre-registration for randonneuring events, and its release machinery",
    packages=find_packages(include=["app", "app.*", "deploy", "deploy.*"]),
    include_package_data=True,
    package_data={
        "app": ["templates/*.jinja2", "templates/*/*.jinja2", "templates/*/*.txt", "static/*"]
    },
    zip_safe=False,
    python_requires=">=3.11",
    install_requires=requires,
    extras_require={"test": tests_require},
    entry_points={
        "paste.app_factory": ["main = app:main"],
        "console_scripts": [
            "initialize_RandoPony_db = app.scripts.initialize_db:main",
            "randopony_worker = app.scripts.worker:main",
            "randopony_serve = app.scripts.serve:main",
            "randopony_smtp_sink = app.scripts.smtp_sink:main",
            # Programs hosts run by name (supervisord, cron, the release machinery): stable
            # across moves of the modules behind them.
            "randopony-host = deploy.host.server:main",
            "randopony-host-boot = deploy.host.boot:main",
            "randopony-release = deploy.host.release_runtime:main",
            "randopony-db-copy = deploy.host.db_copy:main",
            "randopony-cutover = deploy.host.cutover_agent:main",
            "randopony-schedule = deploy.flows.cron_jobs:main",
        ],
    },
)
