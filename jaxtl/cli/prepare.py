"""`jaxtl prepare`: structure files -> a prepared (sharded HDF5) dataset for streaming training."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "prepare",
        help="write structures with their neighbour lists as sharded HDF5 files",
        description="Read extxyz / ASE files frame by frame, compute each neighbour list once "
        "and write shards of HDF5 files (jaxtl.graph.ondisk), for training on sets "
        "larger than memory: each process then reads only the structures of its "
        "own batches.",
    )
    p.add_argument("inputs", nargs="+", help="structure files (extended XYZ or any ASE format)")
    p.add_argument("--out", required=True, help="folder to write (must not hold a prepared set)")
    p.add_argument("--r-max", type=float, required=True, help="cutoff in A: the model's r_max")
    p.add_argument("--shard-size", type=int, default=10_000, help="structures per HDF5 file (default 10000)")
    p.add_argument("--energy-key", default="REF_energy", help="info key of total energies in eV")
    p.add_argument("--forces-key", default="REF_forces", help="arrays key of forces in eV/A")
    p.add_argument("--stress-key", default="REF_stress", help="info key of stress in eV/A^3")
    p.set_defaults(func=run)


def run(args) -> int:
    from jaxtl.graph.io import DataKeys
    from jaxtl.graph.ondisk import OnDiskDataset, iter_configurations, write_ondisk

    keys = DataKeys(energy=args.energy_key, forces=args.forces_key, stress=args.stress_key)
    out = write_ondisk(
        iter_configurations(args.inputs, keys), args.out, args.r_max, args.shard_size, sources=args.inputs
    )
    data = OnDiskDataset(out)
    print(
        f"wrote {len(data)} structures ({int(data.n_nodes.sum())} atoms, {int(data.n_edges.sum())} edges "
        f"within {data.r_max} A) to {out}"
    )
    data.close()
    return 0
