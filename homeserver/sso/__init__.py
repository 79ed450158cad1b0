"""Single sign-on with OpenID Connect identity providers (Keycloak, Azure AD, Google...)."""
