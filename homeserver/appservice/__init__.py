"""Application services: the registry of registered appservices (loading registration files, the
transaction scheduler and the appservice API calls come with the appservice work)."""
