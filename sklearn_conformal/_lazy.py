"""PEP 562 lazy attributes, so importing a sub-package never imports torch or compiles numba."""

import importlib


def attach(package_name, package_globals, names_to_modules):
    """Return ``(__getattr__, __dir__, __all__)`` resolving ``names_to_modules`` on first access.

    Parameters
    ----------
    package_name : str
        ``__name__`` of the package doing the attaching.
    package_globals : dict
        Its ``globals()``; resolved names are cached there.
    names_to_modules : dict of str to str
        Public name -> module (absolute, or relative to ``package_name`` when it starts with '.').
        A name equal to the module's last component resolves to the module itself.
    """

    def __getattr__(name):
        if name not in names_to_modules:
            raise AttributeError(f"module {package_name!r} has no attribute {name!r}")
        module = importlib.import_module(names_to_modules[name], package_name)
        value = module if module.__name__.rsplit(".", 1)[-1] == name else getattr(module, name)
        package_globals[name] = value
        return value

    def __dir__():
        return sorted(set(package_globals) | set(names_to_modules))

    return __getattr__, __dir__, sorted(names_to_modules)
