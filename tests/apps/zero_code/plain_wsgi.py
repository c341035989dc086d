"""A WSGI app with no framework, for gunicorn."""


def application(environ, start_response):
    found = environ["PATH_INFO"].startswith("/items/")
    start_response("200 OK" if found else "404 Not Found",
                   [("Content-Type", "application/json")])
    return [b"{}" if found else b"{\"error\": \"no such page\"}"]
