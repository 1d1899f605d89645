"""
Services as code: a services file (TOML) read into the C{apply} request's
document (L{pycm.services.servicefile}), and environment files
(L{pycm.services.envfile}).
"""
