import atexit


class Bye:
    """A callback whose repr does not show a memory address (it is printed)."""

    def __call__(self):
        raise RuntimeError('in atexit')

    def __repr__(self):
        return 'Bye()'


atexit.register(Bye())
print('main done')
