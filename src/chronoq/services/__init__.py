"""The roles (the seed's services). They talk only through ports, never to each other."""
