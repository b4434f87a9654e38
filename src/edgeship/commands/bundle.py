"""``edgeship bundle inspect|verify|pack|unpack``."""

from __future__ import annotations

from .args import lazy


def register(sub) -> None:
    p = sub.add_parser("bundle", help="create, inspect, verify, pack and unpack bundles",
                       description="Work with bundles: make one from any .onnx or .tflite, show the manifest, check "
                                   "every sha256, pack to one .tar, unpack safely.")
    verbs = p.add_subparsers(dest="bundle_verb", metavar="ACTION", required=True)
    c = verbs.add_parser("create", help="make a bundle from an .onnx or .tflite file (what its exporter embedded is read)",
                         description="Read what the exporter embedded (Ultralytics metadata, Optimum's config.json and "
                                     "preprocessor_config.json beside the file, TFLite metadata and its label zip), "
                                     "print what was inferred and what was assumed, write the bundle with a golden pair "
                                     "made from a real photo, and check that the model reproduces it.")
    c.add_argument("model", metavar="MODEL", help="an .onnx or .tflite file")
    c.add_argument("-o", "--out", default=None, metavar="BUNDLE_DIR", help="bundle folder (default: MODEL without suffix)")
    c.add_argument("--labels", metavar="FILE", help="one label per line (overrides the file's own)")
    c.add_argument("--preset", choices=["imagenet", "yolov8", "blazeface"], default=None,
                   help="preprocessing and decoding of a known family, where the file does not say")
    c.add_argument("--name", help="bundle name (default: the file's stem)")
    c.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    c.set_defaults(run=lazy("edgeship.commands.bundle:create"))
    i = verbs.add_parser("inspect", help="show a bundle's manifest (or the defaults assumed for a bare model)")
    i.add_argument("bundle", metavar="BUNDLE")
    i.set_defaults(run=lazy("edgeship.commands.bundle:inspect"))
    v = verbs.add_parser("verify", help="check every file's sha256 and run the golden input")
    v.add_argument("bundle", metavar="BUNDLE")
    v.set_defaults(run=lazy("edgeship.commands.bundle:verify"))
    k = verbs.add_parser("pack", help="pack a bundle folder into one .tar")
    k.add_argument("bundle", metavar="BUNDLE_DIR")
    k.add_argument("-o", "--out", required=True, metavar="FILE.tar")
    k.set_defaults(run=lazy("edgeship.commands.bundle:pack"))
    u = verbs.add_parser("unpack", help="unpack a .tar safely into a new folder and verify it")
    u.add_argument("archive", metavar="FILE.tar")
    u.add_argument("-o", "--out", required=True, metavar="BUNDLE_DIR")
    u.set_defaults(run=lazy("edgeship.commands.bundle:unpack"))


def create(args) -> int:
    from ..runtime.create import create_bundle
    from ..util import console as make_console

    console = make_console()
    result = create_bundle(args.model, args.out, labels_file=args.labels, preset=args.preset, name=args.name,
                           overwrite=args.force)
    for note in result.inferred:
        console.print(f"inferred: {note}", style="green", highlight=False)
    for note in result.assumed:
        console.print(f"assumed:  {note}", style="yellow", highlight=False)
    check = result.check
    console.print(f"golden pair from {result.golden_source}; reproduced within {check.tolerance} "
                  f"(max error {check.max_abs_error:.2e}) by {result.runtime}", highlight=False)
    console.print(f"[green]created[/green] {result.bundle.root}", highlight=False)
    return 0


def inspect(args) -> int:
    from ..bundle import open_bundle
    from ..util import console as make_console

    console = make_console()
    b = open_bundle(args.bundle, verify=False)
    for note in b.assumed:
        console.print(f"assumed: {note}", style="yellow", highlight=False)
    console.print_json(b.manifest.to_json())
    return 0


def verify(args) -> int:
    from ..bundle import open_bundle
    from ..runtime import Model
    from ..util import console as make_console

    console = make_console()
    b = open_bundle(args.bundle, verify=False)
    files = b.verify()
    console.print(f"[green]ok[/green] {len(files)} files match their sha256", highlight=False)
    if b.manifest.format.value in ("onnx", "tflite"):
        check = Model(b).check_golden()
        if check is None:
            console.print("no golden input in this bundle")
        elif check.ok:
            console.print(f"[green]ok[/green] golden output reproduced (max error {check.max_abs_error:.2e}, {check.tolerance})",
                          highlight=False)
        else:
            console.print(f"[red]golden output differs[/red] by up to {check.max_abs_error:.3g} ({check.tolerance})",
                          highlight=False)
            return 1
    return 0


def pack(args) -> int:
    from ..bundle import pack as do_pack

    print(f"packed {do_pack(args.bundle, args.out)}")
    return 0


def unpack(args) -> int:
    from ..bundle import unpack as do_unpack

    print(f"unpacked and verified {do_unpack(args.archive, args.out)}")
    return 0
