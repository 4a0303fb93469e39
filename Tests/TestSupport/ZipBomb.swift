/// Writes a zip of `entries` deflated entries of `mebibytesEach` MiB of zeros each: a
/// few hundred KiB that declare (and would expand to) far more.
public func makeZipBomb(at path: String, entries: Int, mebibytesEach: Int) throws {
    try run(
        try TestPaths.venvTool("tools", "python3"),
        [
            "-c",
            """
            import zipfile, sys
            entries, size = int(sys.argv[2]), int(sys.argv[3])
            with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
                for i in range(entries):
                    with z.open("zeros%d.bin" % i, "w", force_zip64=True) as e:
                        for _ in range(size): e.write(bytes(1 << 20))
            """,
            path, String(entries), String(mebibytesEach),
        ])
}
