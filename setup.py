"""Build hook: the wheel carries the Lambda handlers as ``pictrace/functions/<name>/app.py``.

``pictrace serve`` runs the very handlers that ``sam build`` deploys, so an
installed wheel needs them too.  They stay in ``functions/`` in the source
tree, where ``template.yaml``'s ``CodeUri`` points, and are copied into the
package only at build time.  Everything else is declared in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithHandlers(build_py):
    def run(self) -> None:
        super().run()
        for app in sorted(Path("functions").glob("*/app.py")):
            target = Path(self.build_lib, "pictrace", "functions", app.parent.name, "app.py")
            self.mkpath(str(target.parent))
            self.copy_file(str(app), str(target))


setup(cmdclass={"build_py": BuildWithHandlers})
