//! Typed parsing: every instruction form and every rejection, as tables.

use super::*;

fn ok(text: &str) -> Dockerfile {
    parse(text, "Dockerfile").unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn first(text: &str) -> Command {
    ok(text).stages[0].instructions[0].command.clone()
}

#[test]
fn rejects_what_buildkit_rejects() {
    let cases = [
        ("", "Dockerfile: the Dockerfile cannot be empty"),
        ("# only\n# comments\n", "Dockerfile:2: file with no instructions"),
        ("\n\n", "Dockerfile:2: file with no instructions"),
        ("FROM a\nENV PATH\n", "Dockerfile:2: ENV must have two arguments"),
        ("FROM a\nENV =x\n", "Dockerfile:2: ENV names can not be blank"),
        ("FROM a\nENV a=b c\n", "Dockerfile:2: Syntax error - can't find = in \"c\". Must be of the form: name=value"),
        ("FROM a\nLABEL x\n", "Dockerfile:2: LABEL must have two arguments"),
        ("FROM a\n\nRUNN x\n", "Dockerfile:3: unknown instruction \"RUNN\" (did you mean RUN?)"),
        ("FROM a\nrunn x\n", "Dockerfile:2: unknown instruction \"runn\" (did you mean run?)"),
        ("FROM a\nFOOBAR x\n", "Dockerfile:2: unknown instruction \"FOOBAR\""),
        ("FROM a\nCOPY --form=x a b\n", "Dockerfile:2: unknown flag: --form (did you mean from?)"),
        ("FROM a\nCOPY --bogus a b\n", "Dockerfile:2: unknown flag: --bogus"),
        ("FROM a\nRUN --network=bridge x\n", "Dockerfile:2: invalid network mode \"bridge\""),
        ("FROM a\nRUN --security=x y\n", "Dockerfile:2: security \"x\" is not valid"),
        ("FROM a\nRUN --mount=from=$X,target=/y z\n", "Dockerfile:2: 'from' doesn't support variable expansion, define alias stage instead"),
        ("FROM a\nENV --x=1 a=b\n", "Dockerfile:2: unknown flag: --x"),
        ("FROM a\nCOPY a\n", "Dockerfile:2: COPY requires at least two arguments, but only one was provided. Destination could not be determined"),
        ("FROM a\nADD a\n", "Dockerfile:2: ADD requires at least two arguments, but only one was provided. Destination could not be determined"),
        ("FROM a\nCOPY a <<EOF\nx\nEOF\n", "Dockerfile:2: COPY cannot accept a heredoc as a destination"),
        ("FROM a\nWORKDIR\n", "Dockerfile:2: WORKDIR requires exactly one argument"),
        ("FROM a\nUSER\n", "Dockerfile:2: USER requires exactly one argument"),
        ("FROM a\nMAINTAINER\n", "Dockerfile:2: MAINTAINER requires exactly one argument"),
        ("FROM a\nSTOPSIGNAL\n", "Dockerfile:2: STOPSIGNAL requires exactly one argument"),
        ("FROM a\nEXPOSE\n", "Dockerfile:2: EXPOSE requires at least one argument"),
        ("FROM a\nVOLUME []\n", "Dockerfile:2: VOLUME requires at least one argument"),
        ("FROM a\nVOLUME [\"\"]\n", "Dockerfile:2: VOLUME specified can not be an empty string"),
        ("FROM a\nARG\n", "Dockerfile:2: ARG requires at least one argument"),
        ("FROM a\nARG =x\n", "Dockerfile:2: ARG names can not be blank"),
        ("FROM a\nSHELL /bin/sh -c\n", "Dockerfile:2: SHELL requires the arguments to be in JSON form"),
        ("FROM a\nSHELL []\n", "Dockerfile:2: SHELL requires at least one argument"),
        ("FROM a\nONBUILD\n", "Dockerfile:2: ONBUILD requires at least one argument"),
        ("FROM a\nONBUILD ONBUILD RUN x\n", "Dockerfile:2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        ("FROM a\nONBUILD FROM b\n", "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger"),
        ("FROM a\nONBUILD maintainer b\n", "Dockerfile:2: MAINTAINER isn't allowed as an ONBUILD trigger"),
        ("FROM a\nHEALTHCHECK\n", "Dockerfile:2: HEALTHCHECK requires at least one argument"),
        ("FROM a\nHEALTHCHECK NONE x\n", "Dockerfile:2: HEALTHCHECK NONE takes no arguments"),
        ("FROM a\nHEALTHCHECK CMD\n", "Dockerfile:2: Missing command after HEALTHCHECK CMD"),
        ("FROM a\nHEALTHCHECK FOO x\n", "Dockerfile:2: Unknown type \"FOO\" in HEALTHCHECK (try CMD)"),
        ("FROM a\nHEALTHCHECK --interval=5 CMD x\n", "Dockerfile:2: time: missing unit in duration \"5\""),
        ("FROM a\nHEALTHCHECK --retries=-1 CMD x\n", "Dockerfile:2: --retries cannot be negative (-1)"),
        ("FROM a\nCMD [1, 2]\n", "Dockerfile:2: when using JSON array syntax, arrays must be comprised of strings only"),
        ("FROM\n", "Dockerfile:1: FROM requires either one or three arguments"),
        ("FROM a b\n", "Dockerfile:1: FROM requires either one or three arguments"),
        ("FROM a AS 1x\n", "Dockerfile:1: invalid name for build stage: \"1x\", name can't start with a number or contain symbols"),
        ("FROM --platfrom=x a\n", "Dockerfile:1: unknown flag: --platfrom (did you mean platform?)"),
        ("RUN x\nFROM a\n", "Dockerfile:1: no build stage in current context"),
        ("ARG x\n", "Dockerfile: dockerfile contains no stages to build"),
        ("# escape=x\nFROM a\n", "Dockerfile:1: invalid escape token 'x' does not match ` or \\"),
        ("# escape=`\n# escape=\\\nFROM a\n", "Dockerfile:2: only one escape parser directive can be used"),
        ("# check=bogus\nFROM a\n", "Dockerfile:1: failed to parse check options: invalid check option \"bogus\""),
        ("FROM a\nRUN <<EOF\nnever ends\n", "Dockerfile:2: unterminated heredoc"),
    ];
    for (text, want) in cases {
        let got = parse(text, "Dockerfile").map(|_| ()).expect_err(text);
        assert_eq!(got.to_string(), want, "input {text:?}");
    }
}

#[test]
fn stages_and_meta_args() {
    let d = ok("ARG BASE=alpine\nARG TAG\nFROM --platform=$BUILDPLATFORM ${BASE}:${TAG} AS Build\nRUN x\nfrom build as final\n");
    assert_eq!(d.meta_args.len(), 2);
    assert_eq!(d.stages.len(), 2);
    let s = &d.stages[0];
    assert_eq!(s.base, "${BASE}:${TAG}");
    assert_eq!(s.name.as_deref(), Some("build"));
    assert_eq!(s.name_as_written.as_deref(), Some("Build"));
    assert_eq!(s.platform.as_deref(), Some("$BUILDPLATFORM"));
    assert_eq!((s.span.start, s.span.end), (3, 3));
    assert_eq!(d.stages[1].keyword, "from");
    assert_eq!(d.stages[1].as_keyword.as_deref(), Some("as"));
    assert_eq!(d.stage_index("BUILD"), Some(0));
}

#[test]
fn run_forms_and_flags() {
    let Command::Run(r) =
        first("FROM a\nRUN --mount=type=cache,target=/c --network=none --security=insecure make\n")
    else {
        panic!("not RUN")
    };
    assert_eq!(r.cmd, ShellOrExec::Shell("make".into()));
    assert_eq!(r.mounts, vec!["type=cache,target=/c"]);
    assert_eq!(
        (r.network, r.security),
        (Some(NetworkMode::None), Some(SecurityMode::Insecure))
    );
    let Command::Run(r) = first("FROM a\nRUN [\"echo\", \"hi there\"]\n") else {
        panic!("not RUN")
    };
    assert_eq!(
        r.cmd,
        ShellOrExec::Exec(vec!["echo".into(), "hi there".into()])
    );
    // invalid JSON falls back to shell form
    let Command::Run(r) = first("FROM a\nRUN ['echo', 'x']\n") else {
        panic!("not RUN")
    };
    assert_eq!(r.cmd, ShellOrExec::Shell("['echo', 'x']".into()));
}

#[test]
fn continuations() {
    let cases = [
        ("FROM a\nRUN a \\\n  b\n", "a   b", 2, 3),
        ("FROM a\nRUN a \\\n# comment\n  b\n", "a   b", 2, 4),
        ("FROM a\nRUN a \\\n\n  b\n", "a   b", 2, 4),
        ("FROM a\nRUN a \\", "a", 2, 2),
        ("# escape=`\nFROM a\nRUN a `\n  b\n", "a   b", 3, 4),
        ("FROM a\nRUN a\\\\\n", "a\\\\", 2, 2),
        ("FROM a\r\nRUN a \\\r\n b\r\n", "a  b", 2, 3),
    ];
    for (text, want, start, end) in cases {
        let d = ok(text);
        let inst = &d.stages[0].instructions[0];
        let Command::Run(r) = &inst.command else {
            panic!("not RUN")
        };
        assert_eq!(r.cmd, ShellOrExec::Shell(want.into()), "{text:?}");
        assert_eq!((inst.span.start, inst.span.end), (start, end), "{text:?}");
    }
    assert_eq!(
        ok("FROM a\nRUN a \\\n\n  b\n").empty_continuations,
        vec![Span::line(4)]
    );
}

#[test]
fn directives() {
    let d = ok("# syntax=docker/dockerfile:1\n# escape=`\n# check=skip=all\nFROM a\n");
    assert_eq!(
        d.directives.syntax.as_ref().map(|d| d.value.as_str()),
        Some("docker/dockerfile:1")
    );
    assert_eq!(d.escape, '`');
    assert_eq!(d.directives.check.as_ref().map(|d| d.span.start), Some(3));
    // after an ordinary comment, `# escape=` is just a comment
    assert_eq!(ok("# hello\n# escape=`\nFROM a\n").escape, '\\');
    // a BOM is ignored
    assert_eq!(ok("\u{feff}# escape=`\nFROM a\n").escape, '`');
}

#[test]
fn heredocs() {
    let text = "FROM a\nRUN <<EOF\necho $HOME\nEOF\nRUN <<-'END' cat\n\t\tliteral $X\n\tEND\nCOPY <<one <<\"two\" /dst/\n1\none\n2\ntwo\nRUN echo done\n";
    let d = ok(text);
    let ins = &d.stages[0].instructions;
    let Command::Run(r) = &ins[0].command else {
        panic!("not RUN")
    };
    assert_eq!(r.cmd, ShellOrExec::Shell("<<EOF".into()));
    assert_eq!(
        (r.heredocs[0].content.as_str(), r.heredocs[0].expand),
        ("echo $HOME\n", true)
    );
    assert_eq!((ins[0].span.start, ins[0].span.end), (2, 4));
    let Command::Run(r) = &ins[1].command else {
        panic!("not RUN")
    };
    assert!(r.heredocs[0].chomp && !r.heredocs[0].expand);
    assert_eq!(r.heredocs[0].body(), "literal $X\n");
    let Command::Copy(c) = &ins[2].command else {
        panic!("not COPY")
    };
    assert!(c.srcs.is_empty());
    assert_eq!(c.dest, "/dst/");
    assert_eq!(
        c.heredocs
            .iter()
            .map(|h| (h.name.as_str(), h.content.as_str(), h.expand))
            .collect::<Vec<_>>(),
        vec![("one", "1\n", true), ("two", "2\n", false)]
    );
    assert_eq!(
        (ins[3].span.start, ins[3].original.as_str()),
        (13, "RUN echo done")
    );
    // JSON-form RUN has no heredocs
    let Command::Run(r) = first("FROM a\nRUN [\"cat\", \"<<EOF\"]\n") else {
        panic!("not RUN")
    };
    assert!(r.heredocs.is_empty());
}

#[test]
fn copy_add_flags() {
    let Command::Copy(c) = first("FROM a\nCOPY --from=build --chown=1:1 --chmod=755 --link --parents --exclude=*.md --exclude=x a b /d/\n") else {
        panic!("not COPY")
    };
    assert_eq!(
        (c.from.as_deref(), c.chown.as_deref(), c.chmod.as_deref()),
        (Some("build"), Some("1:1"), Some("755"))
    );
    assert!(c.link && c.parents);
    assert_eq!(c.exclude, vec!["*.md", "x"]);
    assert_eq!(
        (c.srcs.clone(), c.dest.clone()),
        (vec!["a".to_string(), "b".to_string()], "/d/".to_string())
    );
    let Command::Add(a) = first(
        "FROM a\nADD --checksum=sha256:abc --keep-git-dir=true --unpack=false https://x/y.tar /y\n",
    ) else {
        panic!("not ADD")
    };
    assert_eq!(a.checksum.as_deref(), Some("sha256:abc"));
    assert_eq!((a.keep_git_dir, a.unpack), (Some(true), Some(false)));
    let Command::Copy(c) = first("FROM a\nCOPY [\"a b\", \"/c d/\"]\n") else {
        panic!("not COPY")
    };
    assert_eq!(
        (c.srcs, c.dest),
        (vec!["a b".to_string()], "/c d/".to_string())
    );
}

#[test]
fn env_label_arg_forms() {
    assert_eq!(
        first("FROM a\nENV A=1 B=\"two words\"\n"),
        Command::Env(vec![
            KeyValue {
                key: "A".into(),
                value: "1".into(),
                legacy: false
            },
            KeyValue {
                key: "B".into(),
                value: "\"two words\"".into(),
                legacy: false
            },
        ])
    );
    assert_eq!(
        first("FROM a\nENV PATH /usr/bin:$PATH  x\n"),
        Command::Env(vec![KeyValue {
            key: "PATH".into(),
            value: "/usr/bin:$PATH  x".into(),
            legacy: true
        }])
    );
    assert_eq!(
        first("FROM a\nARG A B=2 C=\n"),
        Command::Arg(vec![
            ArgDef {
                name: "A".into(),
                default: None
            },
            ArgDef {
                name: "B".into(),
                default: Some("2".into())
            },
            ArgDef {
                name: "C".into(),
                default: Some(String::new())
            },
        ])
    );
    assert!(matches!(first("FROM a\nLABEL a=b c=d\n"), Command::Label(l) if l.len() == 2));
}

#[test]
fn other_instructions() {
    let cases: [(&str, Command); 10] = [
        (
            "CMD echo hi",
            Command::Cmd(ShellOrExec::Shell("echo hi".into())),
        ),
        (
            "cmd [\"a\"]",
            Command::Cmd(ShellOrExec::Exec(vec!["a".into()])),
        ),
        (
            "ENTRYPOINT []",
            Command::Entrypoint(ShellOrExec::Exec(vec![])),
        ),
        (
            "EXPOSE 443 80/tcp",
            Command::Expose(vec!["443".into(), "80/tcp".into()]),
        ),
        ("WORKDIR /a b", Command::Workdir("/a b".into())),
        ("USER 1000:1000", Command::User("1000:1000".into())),
        (
            "VOLUME /a /b",
            Command::Volume(vec!["/a".into(), "/b".into()]),
        ),
        (
            "SHELL [\"/bin/bash\", \"-c\"]",
            Command::Shell(vec!["/bin/bash".into(), "-c".into()]),
        ),
        ("STOPSIGNAL SIGTERM", Command::StopSignal("SIGTERM".into())),
        (
            "MAINTAINER me <me@x>",
            Command::Maintainer("me <me@x>".into()),
        ),
    ];
    for (line, want) in cases {
        assert_eq!(first(&format!("FROM a\n{line}\n")), want, "{line}");
    }
}

#[test]
fn healthcheck_and_onbuild() {
    let Command::Healthcheck(Healthcheck::Cmd { test, options }) =
        first("FROM a\nHEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD curl -f http://localhost/\n")
    else {
        panic!("not HEALTHCHECK CMD")
    };
    assert_eq!(test, vec!["CMD-SHELL", "curl -f http://localhost/"]);
    assert_eq!(
        (options.interval, options.timeout, options.retries),
        (30_000_000_000, 3_000_000_000, 3)
    );
    assert_eq!(
        first("FROM a\nHEALTHCHECK none\n"),
        Command::Healthcheck(Healthcheck::None)
    );
    let Command::Onbuild(o) = first("FROM a\nONBUILD RUN echo hi\n") else {
        panic!("not ONBUILD")
    };
    assert_eq!(o.expression, "RUN echo hi");
    assert!(matches!(
        o.trigger.map(|t| t.command),
        Some(Command::Run(_))
    ));
    let Command::Onbuild(o) = first("FROM a\nonbuild RUNN x\n") else {
        panic!("not ONBUILD")
    };
    assert!(o.trigger.is_none());
}
