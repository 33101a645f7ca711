"""The built-in digital liver phantom and the demo cases (issue [A], engineer A2).

``build_phantom(spec) -> Case`` paints a deterministic CT-like abdomen (LPS mm) with
Couinaud segments, portal/hepatic veins of known calibre, bile ducts, hollow organs and
lesions placed as the spec asks; ``build_demo_case(name)`` builds one of the shipped
demo specs (``demo_cases()`` lists them). See docs/phantom.md.
"""

from latplan.phantom.builder import PhantomBuild, build_phantom, build_phantom_detailed
from latplan.phantom.demo import build_demo_case, demo_cases, demo_spec, demo_spec_path
from latplan.phantom.spec import LesionSpec, PhantomSpec, parse_spec

__all__ = [
    "LesionSpec",
    "PhantomBuild",
    "PhantomSpec",
    "build_demo_case",
    "build_phantom",
    "build_phantom_detailed",
    "demo_cases",
    "demo_spec",
    "demo_spec_path",
    "parse_spec",
]
