"""The release machinery creates the domains it needs in the panel when they are missing
(deploy/flows/staging.py create_domains, which init_staging runs), and reuses those that are
there: the seed guide's maintainer created them by hand, a new host has none."""

from deploy.flows.staging import create_domains
from deploy.remote.target import Target


def target_for(staging: str, production: str, said: list[str]) -> Target:
    return Target(staging_domain=staging, production_domain=production, echo=said.append)


def test_missing_domains_are_created_once(own_api, names):
    said = []
    staging = f"randopony.{names.prefix}-bcrandonneur.example"
    production = f"randopony.{names.prefix}-randonneurs.example"
    create_domains(target_for(staging, production, said), own_api)
    assert [(d.domain, d.subdomains) for d in own_api.list_domains()] == [
        (staging, ()),
        (production, ()),
    ]
    assert sorted(said) == [f"  domain {staging} created", f"  domain {production} created"]
    before, said[:] = own_api.list_domains(), []
    create_domains(target_for(staging, production, said), own_api)
    assert own_api.list_domains() == before and said == []


def test_a_name_under_a_domain_of_the_account_becomes_its_sub_domain(own_api, names):
    club = f"{names.prefix}-club.example"
    own_api.create_domain(club, "www")
    create_domains(target_for(f"staging.randopony.{club}", f"randopony.{club}", []), own_api)
    ((domain, subdomains),) = [(d.domain, d.subdomains) for d in own_api.list_domains()]
    assert (domain, subdomains) == (club, ("randopony", "staging.randopony", "www"))


def test_domains_the_maintainer_created_are_used_as_they_are(own_api, names):
    staging_parent = f"{names.prefix}-bcrandonneur.example"
    production_parent = f"{names.prefix}-randonneurs.example"
    own_api.create_domain(staging_parent, "randopony")
    own_api.create_domain(production_parent, "randopony")
    before, said = own_api.list_domains(), []
    target = target_for(f"randopony.{staging_parent}", f"randopony.{production_parent}", said)
    create_domains(target, own_api)
    assert own_api.list_domains() == before and said == []
