# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_anchorfs_global_optspecs
    string join \n s/store= escaped h/help V/version
end

function __fish_anchorfs_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_anchorfs_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_anchorfs_using_subcommand
    set -l cmd (__fish_anchorfs_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c anchorfs -n "__fish_anchorfs_needs_command" -s s -l store -d 'The store: a directory holding a file store (DIR or file:DIR), `mem:` (an empty store in memory that lasts for this command only), or a PostgreSQL database (postgres://USER@HOST[:PORT]/DB or postgresql://...). Text before the first colon that looks like a URI scheme (letters, digits, + - .; no /) is a scheme, and an unknown one is an error: write a directory whose name has a colon as ./NAME or file:NAME' -r
complete -c anchorfs -n "__fish_anchorfs_needs_command" -l escaped -d 'Take anchor names in the mount\'s escaped form (%25 for %, %2F for /, %00 for NUL, %2E for a leading dot, %empty, %long-HASH-...), so a directory name copied from a mount works as is'
complete -c anchorfs -n "__fish_anchorfs_needs_command" -s h -l help -d 'Print help'
complete -c anchorfs -n "__fish_anchorfs_needs_command" -s V -l version -d 'Print version'
complete -c anchorfs -n "__fish_anchorfs_needs_command" -f -a "init" -d 'Create an empty store, choosing how its content is cut into chunks'
complete -c anchorfs -n "__fish_anchorfs_needs_command" -f -a "mount" -d 'Mount a store as a file system (also run as mount.anchorfs, by mount(8))'
complete -c anchorfs -n "__fish_anchorfs_needs_command" -f -a "put" -d 'Store FILE (or stdin) and anchor NAME to it; print the ref'
complete -c anchorfs -n "__fish_anchorfs_needs_command" -f -a "get" -d 'Write NAME\'s content as of TIME (default now), or print its ref'
complete -c anchorfs -n "__fish_anchorfs_needs_command" -f -a "cat" -d 'Write the content of a ref'
complete -c anchorfs -n "__fish_anchorfs_needs_command" -f -a "ls" -d 'List anchors: name, latest time, latest ref, size, number of versions'
complete -c anchorfs -n "__fish_anchorfs_needs_command" -f -a "log" -d 'Show NAME\'s history, oldest first'
complete -c anchorfs -n "__fish_anchorfs_needs_command" -f -a "map-ref" -d 'Print the current anchor map ref, or "none"'
complete -c anchorfs -n "__fish_anchorfs_needs_command" -f -a "expire" -d 'Drop history entries older than a time, keeping at least N per anchor'
complete -c anchorfs -n "__fish_anchorfs_needs_command" -f -a "sync" -d 'Make every store hold every blob and every anchor entry of the others'
complete -c anchorfs -n "__fish_anchorfs_needs_command" -f -a "gc" -d 'Delete blobs that no anchor reaches and that are older than the grace period'
complete -c anchorfs -n "__fish_anchorfs_needs_command" -f -a "fsck" -d 'Check every blob against its ref and that every reachable ref is present'
complete -c anchorfs -n "__fish_anchorfs_needs_command" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, elvish, powershell)'
complete -c anchorfs -n "__fish_anchorfs_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand init" -l chunk-size -d 'The average chunk size: a power of two from 4KiB to 4MiB, with K/KiB or M/MiB (binary units) or in bytes: 1MiB, 256K, 65536. The minimum chunk is a quarter of it. Default 256KiB' -r
complete -c anchorfs -n "__fish_anchorfs_using_subcommand init" -l chunking -d 'A named chunking: `go` for Go\'s defaults (64 KiB average, 1 KiB minimum: what a store without a recorded setting has, so Go and anchorfs writers of the same content share chunks), `default` for the default of new stores' -r -f -a "go\t'Go\'s defaults: 64 KiB average, 1 KiB minimum, fan-out 8'
default\t'The default of new stores: 256 KiB average, 64 KiB minimum, fan-out 8'"
complete -c anchorfs -n "__fish_anchorfs_using_subcommand init" -s s -l store -d 'The store: a directory holding a file store (DIR or file:DIR), `mem:` (an empty store in memory that lasts for this command only), or a PostgreSQL database (postgres://USER@HOST[:PORT]/DB or postgresql://...). Text before the first colon that looks like a URI scheme (letters, digits, + - .; no /) is a scheme, and an unknown one is an error: write a directory whose name has a colon as ./NAME or file:NAME' -r
complete -c anchorfs -n "__fish_anchorfs_using_subcommand init" -l escaped -d 'Take anchor names in the mount\'s escaped form (%25 for %, %2F for /, %00 for NUL, %2E for a leading dot, %empty, %long-HASH-...), so a directory name copied from a mount works as is'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand init" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand mount" -s o -d 'Mount options, comma-separated, as listed below; may be given more than once' -r -f -a "ro\t'Read-only: every write is refused (EROFS)'
allow_other\t'Let users other than the mounting one in; the kernel then checks every access against the modes shown (default_permissions is implied), and opening a version for writing needs write permission on its anchor directory. A user other than root needs user_allow_other in /etc/fuse.conf'
default_permissions\t'Have the kernel check every access against the modes shown, also without allow_other (EACCES where they do not grant it)'
uid=\t'The owner shown on every node (default: the user who mounted)'
gid=\t'The group shown on every node (default: the group of the user who mounted)'
dir_mode=\t'The mode of every directory, octal (default: the store directory\'s, at most 0755)'
file_mode=\t'The mode of every file, octal (default: the mode it was written or chmod\'ed with, else 0644, never more than the store directory grants)'
cache=\t'The size of the blob cache in memory, in bytes, with K, M or G'
cache_dir=\t'Keep a cache of the store\'s blobs in files in DIR, so what was read once is read from local disk, also after a remount (default: for a store across a network, a directory under $XDG_CACHE_HOME/anchorfs, or /var/cache/anchorfs for root; none for a store in a local directory). Mounts may share one'
cache_size=\t'The most bytes the disk cache keeps, with K, M or G (whole copies of files up to half of it are kept too); 0 turns the disk cache off'
poll=\t'How soon changes made elsewhere (the command line, other mounts) appear, and how long the kernel caches directories and latest; a store that tells of other writers\' commits shows them sooner'
names=\t'How version files are named: rfc3339 (2026-11-24T21:20:32.123456789Z) or compact (2026-11-24_21-20-32.123456789Z, no colons, for tools and file shares that reject them); lookups take both'
log=\t'Where the daemon logs (default: syslog when detached, stderr with -f)'
noxattr\t'Answer no extended attribute call (ENOSYS), so the kernel stops asking: a faster ls -l, and no user.anchorfs.ref or user.anchorfs.at'
nopassthrough\t'Serve every read through the daemon: no whole copies of large files in the disk cache, and no reads by the kernel from them (passthrough)'"
complete -c anchorfs -n "__fish_anchorfs_using_subcommand mount" -l store -r
complete -c anchorfs -n "__fish_anchorfs_using_subcommand mount" -s f -d 'Stay in the foreground and log to stderr; without it the command returns once the mount is live and the daemon logs to syslog (or -o log=FILE)'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand mount" -s d -d 'Log debug detail (the same as RUST_LOG=debug)'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand mount" -l escaped
complete -c anchorfs -n "__fish_anchorfs_using_subcommand mount" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand put" -l at -d 'The version\'s time (default now)' -r
complete -c anchorfs -n "__fish_anchorfs_using_subcommand put" -l ref -d 'Anchor NAME to this existing ref instead of storing content' -r
complete -c anchorfs -n "__fish_anchorfs_using_subcommand put" -s s -l store -d 'The store: a directory holding a file store (DIR or file:DIR), `mem:` (an empty store in memory that lasts for this command only), or a PostgreSQL database (postgres://USER@HOST[:PORT]/DB or postgresql://...). Text before the first colon that looks like a URI scheme (letters, digits, + - .; no /) is a scheme, and an unknown one is an error: write a directory whose name has a colon as ./NAME or file:NAME' -r
complete -c anchorfs -n "__fish_anchorfs_using_subcommand put" -l raw -d 'Store the content as one blob instead of a split tree'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand put" -l allow-missing -d 'With --ref: anchor even if the store does not hold the ref'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand put" -l escaped -d 'Take anchor names in the mount\'s escaped form (%25 for %, %2F for /, %00 for NUL, %2E for a leading dot, %empty, %long-HASH-...), so a directory name copied from a mount works as is'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand put" -s h -l help -d 'Print help'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand get" -l at -d 'Read the version current at this time (default now)' -r
complete -c anchorfs -n "__fish_anchorfs_using_subcommand get" -s s -l store -d 'The store: a directory holding a file store (DIR or file:DIR), `mem:` (an empty store in memory that lasts for this command only), or a PostgreSQL database (postgres://USER@HOST[:PORT]/DB or postgresql://...). Text before the first colon that looks like a URI scheme (letters, digits, + - .; no /) is a scheme, and an unknown one is an error: write a directory whose name has a colon as ./NAME or file:NAME' -r
complete -c anchorfs -n "__fish_anchorfs_using_subcommand get" -l ref-only -d 'Print the ref instead of the content'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand get" -l raw -d 'Read the ref as one raw blob, whatever its recorded kind'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand get" -l split -d 'Read the ref as a split tree, whatever its recorded kind'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand get" -l escaped -d 'Take anchor names in the mount\'s escaped form (%25 for %, %2F for /, %00 for NUL, %2E for a leading dot, %empty, %long-HASH-...), so a directory name copied from a mount works as is'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand get" -s h -l help -d 'Print help'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand cat" -s s -l store -d 'The store: a directory holding a file store (DIR or file:DIR), `mem:` (an empty store in memory that lasts for this command only), or a PostgreSQL database (postgres://USER@HOST[:PORT]/DB or postgresql://...). Text before the first colon that looks like a URI scheme (letters, digits, + - .; no /) is a scheme, and an unknown one is an error: write a directory whose name has a colon as ./NAME or file:NAME' -r
complete -c anchorfs -n "__fish_anchorfs_using_subcommand cat" -l raw -d 'Read the ref as one raw blob, whatever its recorded kind'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand cat" -l split -d 'Read the ref as a split tree, whatever its recorded kind'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand cat" -l escaped -d 'Take anchor names in the mount\'s escaped form (%25 for %, %2F for /, %00 for NUL, %2E for a leading dot, %empty, %long-HASH-...), so a directory name copied from a mount works as is'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand cat" -s h -l help -d 'Print help'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand ls" -s s -l store -d 'The store: a directory holding a file store (DIR or file:DIR), `mem:` (an empty store in memory that lasts for this command only), or a PostgreSQL database (postgres://USER@HOST[:PORT]/DB or postgresql://...). Text before the first colon that looks like a URI scheme (letters, digits, + - .; no /) is a scheme, and an unknown one is an error: write a directory whose name has a colon as ./NAME or file:NAME' -r
complete -c anchorfs -n "__fish_anchorfs_using_subcommand ls" -l json -d 'One JSON document instead of a table'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand ls" -l escaped -d 'Take anchor names in the mount\'s escaped form (%25 for %, %2F for /, %00 for NUL, %2E for a leading dot, %empty, %long-HASH-...), so a directory name copied from a mount works as is'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand ls" -s h -l help -d 'Print help'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand log" -s s -l store -d 'The store: a directory holding a file store (DIR or file:DIR), `mem:` (an empty store in memory that lasts for this command only), or a PostgreSQL database (postgres://USER@HOST[:PORT]/DB or postgresql://...). Text before the first colon that looks like a URI scheme (letters, digits, + - .; no /) is a scheme, and an unknown one is an error: write a directory whose name has a colon as ./NAME or file:NAME' -r
complete -c anchorfs -n "__fish_anchorfs_using_subcommand log" -l json -d 'One JSON document instead of a table'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand log" -l escaped -d 'Take anchor names in the mount\'s escaped form (%25 for %, %2F for /, %00 for NUL, %2E for a leading dot, %empty, %long-HASH-...), so a directory name copied from a mount works as is'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand log" -s h -l help -d 'Print help'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand map-ref" -s s -l store -d 'The store: a directory holding a file store (DIR or file:DIR), `mem:` (an empty store in memory that lasts for this command only), or a PostgreSQL database (postgres://USER@HOST[:PORT]/DB or postgresql://...). Text before the first colon that looks like a URI scheme (letters, digits, + - .; no /) is a scheme, and an unknown one is an error: write a directory whose name has a colon as ./NAME or file:NAME' -r
complete -c anchorfs -n "__fish_anchorfs_using_subcommand map-ref" -l escaped -d 'Take anchor names in the mount\'s escaped form (%25 for %, %2F for /, %00 for NUL, %2E for a leading dot, %empty, %long-HASH-...), so a directory name copied from a mount works as is'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand map-ref" -s h -l help -d 'Print help'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand expire" -l before -d 'Drop entries older than this time' -r
complete -c anchorfs -n "__fish_anchorfs_using_subcommand expire" -l keep -d 'Keep at least this many entries of every anchor; with 0, an anchor whose every entry is older than TIME is removed' -r
complete -c anchorfs -n "__fish_anchorfs_using_subcommand expire" -s s -l store -d 'The store: a directory holding a file store (DIR or file:DIR), `mem:` (an empty store in memory that lasts for this command only), or a PostgreSQL database (postgres://USER@HOST[:PORT]/DB or postgresql://...). Text before the first colon that looks like a URI scheme (letters, digits, + - .; no /) is a scheme, and an unknown one is an error: write a directory whose name has a colon as ./NAME or file:NAME' -r
complete -c anchorfs -n "__fish_anchorfs_using_subcommand expire" -l dry-run -d 'Print what would be dropped without changing the store'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand expire" -l escaped -d 'Take anchor names in the mount\'s escaped form (%25 for %, %2F for /, %00 for NUL, %2E for a leading dot, %empty, %long-HASH-...), so a directory name copied from a mount works as is'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand expire" -s h -l help -d 'Print help'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand sync" -s s -l store -d 'The store: a directory holding a file store (DIR or file:DIR), `mem:` (an empty store in memory that lasts for this command only), or a PostgreSQL database (postgres://USER@HOST[:PORT]/DB or postgresql://...). Text before the first colon that looks like a URI scheme (letters, digits, + - .; no /) is a scheme, and an unknown one is an error: write a directory whose name has a colon as ./NAME or file:NAME' -r
complete -c anchorfs -n "__fish_anchorfs_using_subcommand sync" -l escaped -d 'Take anchor names in the mount\'s escaped form (%25 for %, %2F for /, %00 for NUL, %2E for a leading dot, %empty, %long-HASH-...), so a directory name copied from a mount works as is'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand sync" -s h -l help -d 'Print help'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand gc" -l grace -d 'Keep unreachable blobs younger than this (e.g. 30s, 10m, 1h, 2d, 1h30m, 0s)' -r
complete -c anchorfs -n "__fish_anchorfs_using_subcommand gc" -s s -l store -d 'The store: a directory holding a file store (DIR or file:DIR), `mem:` (an empty store in memory that lasts for this command only), or a PostgreSQL database (postgres://USER@HOST[:PORT]/DB or postgresql://...). Text before the first colon that looks like a URI scheme (letters, digits, + - .; no /) is a scheme, and an unknown one is an error: write a directory whose name has a colon as ./NAME or file:NAME' -r
complete -c anchorfs -n "__fish_anchorfs_using_subcommand gc" -l dry-run -d 'Report what would be deleted without deleting it'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand gc" -l escaped -d 'Take anchor names in the mount\'s escaped form (%25 for %, %2F for /, %00 for NUL, %2E for a leading dot, %empty, %long-HASH-...), so a directory name copied from a mount works as is'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand gc" -s h -l help -d 'Print help'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand fsck" -s s -l store -d 'The store: a directory holding a file store (DIR or file:DIR), `mem:` (an empty store in memory that lasts for this command only), or a PostgreSQL database (postgres://USER@HOST[:PORT]/DB or postgresql://...). Text before the first colon that looks like a URI scheme (letters, digits, + - .; no /) is a scheme, and an unknown one is an error: write a directory whose name has a colon as ./NAME or file:NAME' -r
complete -c anchorfs -n "__fish_anchorfs_using_subcommand fsck" -l escaped -d 'Take anchor names in the mount\'s escaped form (%25 for %, %2F for /, %00 for NUL, %2E for a leading dot, %empty, %long-HASH-...), so a directory name copied from a mount works as is'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand fsck" -s h -l help -d 'Print help'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand completions" -s s -l store -d 'The store: a directory holding a file store (DIR or file:DIR), `mem:` (an empty store in memory that lasts for this command only), or a PostgreSQL database (postgres://USER@HOST[:PORT]/DB or postgresql://...). Text before the first colon that looks like a URI scheme (letters, digits, + - .; no /) is a scheme, and an unknown one is an error: write a directory whose name has a colon as ./NAME or file:NAME' -r
complete -c anchorfs -n "__fish_anchorfs_using_subcommand completions" -l escaped -d 'Take anchor names in the mount\'s escaped form (%25 for %, %2F for /, %00 for NUL, %2E for a leading dot, %empty, %long-HASH-...), so a directory name copied from a mount works as is'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand completions" -s h -l help -d 'Print help'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand help; and not __fish_seen_subcommand_from init mount put get cat ls log map-ref expire sync gc fsck completions help" -f -a "init" -d 'Create an empty store, choosing how its content is cut into chunks'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand help; and not __fish_seen_subcommand_from init mount put get cat ls log map-ref expire sync gc fsck completions help" -f -a "mount" -d 'Mount a store as a file system (also run as mount.anchorfs, by mount(8))'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand help; and not __fish_seen_subcommand_from init mount put get cat ls log map-ref expire sync gc fsck completions help" -f -a "put" -d 'Store FILE (or stdin) and anchor NAME to it; print the ref'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand help; and not __fish_seen_subcommand_from init mount put get cat ls log map-ref expire sync gc fsck completions help" -f -a "get" -d 'Write NAME\'s content as of TIME (default now), or print its ref'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand help; and not __fish_seen_subcommand_from init mount put get cat ls log map-ref expire sync gc fsck completions help" -f -a "cat" -d 'Write the content of a ref'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand help; and not __fish_seen_subcommand_from init mount put get cat ls log map-ref expire sync gc fsck completions help" -f -a "ls" -d 'List anchors: name, latest time, latest ref, size, number of versions'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand help; and not __fish_seen_subcommand_from init mount put get cat ls log map-ref expire sync gc fsck completions help" -f -a "log" -d 'Show NAME\'s history, oldest first'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand help; and not __fish_seen_subcommand_from init mount put get cat ls log map-ref expire sync gc fsck completions help" -f -a "map-ref" -d 'Print the current anchor map ref, or "none"'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand help; and not __fish_seen_subcommand_from init mount put get cat ls log map-ref expire sync gc fsck completions help" -f -a "expire" -d 'Drop history entries older than a time, keeping at least N per anchor'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand help; and not __fish_seen_subcommand_from init mount put get cat ls log map-ref expire sync gc fsck completions help" -f -a "sync" -d 'Make every store hold every blob and every anchor entry of the others'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand help; and not __fish_seen_subcommand_from init mount put get cat ls log map-ref expire sync gc fsck completions help" -f -a "gc" -d 'Delete blobs that no anchor reaches and that are older than the grace period'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand help; and not __fish_seen_subcommand_from init mount put get cat ls log map-ref expire sync gc fsck completions help" -f -a "fsck" -d 'Check every blob against its ref and that every reachable ref is present'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand help; and not __fish_seen_subcommand_from init mount put get cat ls log map-ref expire sync gc fsck completions help" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, elvish, powershell)'
complete -c anchorfs -n "__fish_anchorfs_using_subcommand help; and not __fish_seen_subcommand_from init mount put get cat ls log map-ref expire sync gc fsck completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
