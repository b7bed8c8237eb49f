def includeme(config):
    config.add_static_view("static", "app:static", cache_max_age=3600)
    config.add_route("home", "/")
    config.add_route("organizer_info", "/organizer-info/")
    config.add_route("about_pony", "/about-pony/")
    config.add_route("up", "/up")

    brevet = "/brevets/{region}/{distance}/{date}"
    config.add_route("brevet.list", "/brevets/")
    config.add_route("brevet.region", "/brevets/{region}/")
    config.add_route("brevet", brevet)
    config.add_route("brevet.entry", brevet + "/entry")
    config.add_route("brevet.rider_emails", brevet + "/rider_emails/{uuid}")
    config.add_route("brevet.rider_list", brevet + "/rider_list/{uuid}.{ext}")

    populaire = "/populaires/{short_name}"
    config.add_route("populaire.list", "/populaires/")
    config.add_route("populaire", populaire)
    config.add_route("populaire.entry", populaire + "/entry")
    config.add_route("populaire.rider_emails", populaire + "/rider_emails/{uuid}")
    config.add_route("populaire.rider_list", populaire + "/rider_list/{uuid}.{ext}")

    config.add_route("admin.login", "/admin/login")
    config.add_route("admin.logout", "/admin/logout")
    config.add_route("admin.home", "/admin/")
    for kind in ("brevets", "populaires", "wranglers"):
        config.add_route(f"admin.{kind}", f"/admin/{kind}/")
        config.add_route(f"admin.{kind}.new", f"/admin/{kind}/new")
        config.add_route(f"admin.{kind}.edit", f"/admin/{kind}/{{id:\\d+}}/edit")
        config.add_route(f"admin.{kind}.delete", f"/admin/{kind}/{{id:\\d+}}/delete")
    for kind in ("brevets", "populaires"):
        config.add_route(f"admin.{kind}.view", f"/admin/{kind}/{{id:\\d+}}/")
        config.add_route(f"admin.{kind}.setup", f"/admin/{kind}/{{id:\\d+}}/setup/{{action}}")
