//! Each rule with a Dockerfile that triggers it and one that does not, plus the
//! evaluation errors and the `# check=` controls.

use super::*;

fn findings(text: &str, opts: &CheckOptions) -> Vec<String> {
    let r = check(text, "Dockerfile", opts);
    assert!(
        r.error.is_none(),
        "{text:?}: unexpected error {:?}",
        r.error
    );
    r.warnings
        .iter()
        .map(|w| format!("{}:{} {}", w.rule, w.span.start, w.message))
        .collect()
}

fn rules_of(text: &str) -> Vec<String> {
    findings(text, &CheckOptions::default())
        .iter()
        .map(|f| f.split(':').next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn each_rule_positive_and_negative() {
    // (rule, triggers it, does not)
    let cases = [
        (
            "JSONArgsRecommended",
            "FROM a\nCMD echo hi\n",
            "FROM a\nCMD [\"echo\", \"hi\"]\n",
        ),
        (
            "JSONArgsRecommended",
            "FROM a\nENTRYPOINT my-app\n",
            "FROM a\nSHELL [\"/bin/bash\", \"-c\"]\nENTRYPOINT my-app\n",
        ),
        ("StageNameCasing", "FROM a AS Build\n", "FROM a AS build\n"),
        ("FromAsCasing", "FROM a as build\n", "FROM a AS build\n"),
        ("FromAsCasing", "from a AS build\n", "from a as build\n"),
        (
            "DuplicateStageName",
            "FROM a AS x\nFROM b AS x\n",
            "FROM a AS x\nFROM b AS y\n",
        ),
        (
            "ReservedStageName",
            "FROM a AS scratch\n",
            "FROM a AS scratchy\n",
        ),
        (
            "ReservedStageName",
            "FROM a AS context\n",
            "FROM a AS ctx\n",
        ),
        (
            "UndefinedVar",
            "FROM a\nENV X=$NOPE\n",
            "FROM a\nARG NOPE\nENV X=$NOPE\n",
        ),
        (
            "UndefinedVar",
            "FROM a\nCOPY $SRC /x\n",
            "FROM a\nENV SRC=.\nCOPY $SRC /x\n",
        ),
        (
            "UndefinedVar",
            "FROM a\nWORKDIR /$DIR\n",
            "FROM a\nENV PATH=/x:$PATH\nWORKDIR /x\n",
        ),
        (
            "UndefinedArgInFrom",
            "FROM alpine:$TAG\n",
            "ARG TAG=3\nFROM alpine:$TAG\n",
        ),
        (
            "UndefinedArgInFrom",
            "FROM --platform=linux/amd64$SUFFIX a\n",
            "FROM --platform=$BUILDPLATFORM a\n",
        ),
        (
            "MaintainerDeprecated",
            "FROM a\nMAINTAINER me\n",
            "FROM a\nLABEL org.opencontainers.image.authors=me\n",
        ),
        (
            "ConsistentInstructionCasing",
            "FROM a\nrun x\nRUN y\n",
            "from a\nrun x\nrun y\n",
        ),
        (
            "WorkdirRelativePath",
            "FROM a\nWORKDIR app\n",
            "FROM a\nWORKDIR /app\nWORKDIR sub\n",
        ),
        (
            "LegacyKeyValueFormat",
            "FROM a\nENV A b\n",
            "FROM a\nENV A=b\n",
        ),
        (
            "LegacyKeyValueFormat",
            "FROM a\nLABEL a b\n",
            "FROM a\nLABEL a=b\n",
        ),
        (
            "MultipleInstructionsDisallowed",
            "FROM a\nCMD [\"a\"]\nCMD [\"b\"]\n",
            "FROM a\nCMD [\"a\"]\nFROM b\nCMD [\"b\"]\n",
        ),
        (
            "MultipleInstructionsDisallowed",
            "FROM a\nENTRYPOINT [\"a\"]\nENTRYPOINT [\"b\"]\n",
            "FROM a\nENTRYPOINT [\"a\"]\nCMD [\"b\"]\n",
        ),
        (
            "MultipleInstructionsDisallowed",
            "FROM a\nHEALTHCHECK NONE\nHEALTHCHECK NONE\n",
            "FROM a\nHEALTHCHECK NONE\n",
        ),
        (
            "SecretsUsedInArgOrEnv",
            "FROM a\nARG GITHUB_TOKEN\n",
            "FROM a\nARG PUBLIC_KEY\n",
        ),
        (
            "SecretsUsedInArgOrEnv",
            "FROM a\nENV DB_PASSWORD=x\n",
            "FROM a\nENV PASSWORD_FILE=/run/secrets/db\n",
        ),
        (
            "InvalidDefaultArgInFrom",
            "ARG TAG\nFROM alpine:${TAG}\n",
            "ARG TAG=3.20\nFROM alpine:${TAG}\n",
        ),
        (
            "InvalidDefaultArgInFrom",
            "ARG REPO\nFROM ${REPO}/app\n",
            "ARG REPO=example\nFROM ${REPO}/app\n",
        ),
        (
            "RedundantTargetPlatform",
            "FROM --platform=$TARGETPLATFORM a\n",
            "FROM --platform=$BUILDPLATFORM a\n",
        ),
        (
            "FromPlatformFlagConstDisallowed",
            "FROM --platform=linux/amd64 a\n",
            "FROM --platform=linux/amd64 a AS build-amd64\n",
        ),
        (
            "NoEmptyContinuation",
            "FROM a\nRUN a \\\n\n b\n",
            "FROM a\nRUN a \\\n b\n",
        ),
        (
            "ExposeProtoCasing",
            "FROM a\nEXPOSE 80/TCP\n",
            "FROM a\nEXPOSE 80/tcp\n",
        ),
        (
            "ExposeInvalidFormat",
            "FROM a\nEXPOSE 8080:80\n",
            "FROM a\nEXPOSE 80\n",
        ),
    ];
    for (rule, bad, good) in cases {
        assert!(
            rules_of(bad).iter().any(|r| r == rule),
            "{rule} should fire on {bad:?}: {:?}",
            rules_of(bad)
        );
        assert!(
            !rules_of(good).iter().any(|r| r == rule),
            "{rule} should not fire on {good:?}: {:?}",
            rules_of(good)
        );
    }
}

#[test]
fn messages_and_lines() {
    let got = findings(
        "FROM alpine AS Base\nENV foo bar\nWORKDIR src\nCMD echo $HOME\nCOPY $SRCDIR /x\nfrom base as b2\n",
        &CheckOptions::default(),
    );
    let want = [
        "StageNameCasing:1 Stage name 'Base' should be lowercase",
        "LegacyKeyValueFormat:2 \"ENV key=value\" should be used instead of legacy \"ENV key value\" format",
        "WorkdirRelativePath:3 Relative workdir \"src\" can have unexpected results if the base image changes",
        "JSONArgsRecommended:4 JSON arguments recommended for CMD to prevent unintended behavior related to OS signals",
        "UndefinedVar:5 Usage of undefined variable '$SRCDIR'",
        "ConsistentInstructionCasing:6 Command 'from' should match the case of the command majority (uppercase)",
    ];
    assert_eq!(got, want);
}

#[test]
fn suggestions_in_messages() {
    let got = findings(
        "FROM a\nENV PORT=80\nEXPOSE $PORT\nLABEL p=$PROT\n",
        &CheckOptions::default(),
    );
    assert_eq!(
        got,
        vec!["UndefinedVar:4 Usage of undefined variable '$PROT' (did you mean $PORT?)"]
    );
    let got = findings(
        "ARG VERSION=1\nFROM alpine:$VERSON\n",
        &CheckOptions::default(),
    );
    assert_eq!(
        got,
        vec![
            "InvalidDefaultArgInFrom:2 Default value for ARG alpine:$VERSON results in empty or invalid base image name",
            "UndefinedArgInFrom:2 FROM argument 'VERSON' is not declared (did you mean VERSION?)",
        ]
    );
}

#[test]
fn multiple_instructions_reports_the_earlier_one() {
    let got = findings(
        "FROM a\nCMD [\"a\"]\nRUN x\nCMD [\"b\"]\n",
        &CheckOptions::default(),
    );
    assert_eq!(got, vec!["MultipleInstructionsDisallowed:2 Multiple CMD instructions should not be used in the same stage because only the last one will be used"]);
}

#[test]
fn stages_inherit_env_and_shell() {
    let text = "FROM a AS base\nENV APP=/app\nSHELL [\"/bin/sh\", \"-c\"]\nFROM base\nWORKDIR $APP\nCMD run\n";
    assert_eq!(
        findings(text, &CheckOptions::default()),
        Vec::<String>::new()
    );
}

#[test]
fn build_args_and_meta_args() {
    let text = "ARG BASE=alpine\nFROM $BASE\nARG BASE\nARG V\nENV X=$BASE-$V\n";
    assert_eq!(
        findings(text, &CheckOptions::default()),
        Vec::<String>::new()
    );
    let opts = CheckOptions {
        build_args: vec![("BASE".into(), "".into())],
        target: None,
    };
    let r = check(text, "Dockerfile", &opts);
    assert_eq!(
        r.error.map(|e| e.to_string()).as_deref(),
        Some("Dockerfile:2: base name ($BASE) should not be blank")
    );
}

#[test]
fn check_directive_controls() {
    assert!(rules_of("# check=skip=JSONArgsRecommended\nFROM a\nCMD x\n").is_empty());
    assert!(rules_of("# check=skip=all\nFROM a\nCMD x\nMAINTAINER m\n").is_empty());
    assert!(rules_of("FROM a\n# check=skip=JSONArgsRecommended\nCMD x\n").is_empty());
    assert_eq!(
        rules_of("FROM a\n# check=skip=JSONArgsRecommended\nCMD x\nENTRYPOINT y\n"),
        vec!["JSONArgsRecommended"]
    );
    let r = check(
        "# check=error=true\nFROM a\nCMD x\n",
        "Dockerfile",
        &CheckOptions::default(),
    );
    assert_eq!(
        r.error.map(|e| e.to_string()).as_deref(),
        Some("Dockerfile: lint violation found for rules: JSONArgsRecommended")
    );
    let r = check(
        "# check=error=true\nFROM a\nCMD [\"x\"]\n",
        "Dockerfile",
        &CheckOptions::default(),
    );
    assert!(r.error.is_none() && r.exit_code() == 0);
    // experimental rules are off unless asked for
    assert!(rules_of("FROM a\n# some text\nARG X\n").is_empty());
    let on = "# check=experimental=InvalidDefinitionDescription\n\n";
    assert_eq!(
        findings(&format!("{on}FROM a\n# some text\nARG X\n"), &CheckOptions::default()),
        vec!["InvalidDefinitionDescription:5 Comment for ARG should follow the format: `# X <description>`"]
    );
    assert!(rules_of(&format!("{on}FROM a\n# X is the thing\nARG X\n")).is_empty());
    assert_eq!(
        rules_of(&format!("{on}# the base\nFROM a AS base\n")),
        vec!["InvalidDefinitionDescription"]
    );
}

#[test]
fn evaluation_errors() {
    let cases = [
        ("FROM a\nENV X=${Y:?required}\n", "Dockerfile:2: failed to process \"${Y:?required}\": Y: required"),
        // BuildKit splits ENV words on blanks before expansion
        ("FROM a\nENV X=${Y:?is required}\n", "Dockerfile:2: Syntax error - can't find = in \"required}\". Must be of the form: name=value"),
        ("FROM a\nRUN --mount=type=cahce,target=/c x\n", "Dockerfile:2: unsupported mount type \"cahce\" (did you mean cache?)"),
        ("FROM a\nSTOPSIGNAL SIGBOGUS\n", "Dockerfile:2: Invalid signal: SIGBOGUS"),
        ("FROM a\nEXPOSE 80/xyz\n", "Dockerfile:2: invalid port: \"80/xyz\": invalid proto: xyz"),
        ("ARG B\nFROM ${B}\n", "Dockerfile:2: base name (${B}) should not be blank"),
        ("FROM --platform=bogus a\n", "Dockerfile:1: failed to parse platform bogus: \"bogus\": unknown operating system or architecture: invalid argument"),
        ("FROM a\nCOPY 'x /y\n", "Dockerfile:2: failed to process \"'x\": unexpected end of statement while looking for matching single-quote"),
        ("FROM a\nRUNN x\n", "Dockerfile:2: unknown instruction \"RUNN\" (did you mean RUN?)"),
    ];
    for (text, want) in cases {
        let r = check(text, "Dockerfile", &CheckOptions::default());
        assert_eq!(
            r.error.as_ref().map(|e| e.to_string()).as_deref(),
            Some(want),
            "{text:?}"
        );
        assert_eq!(r.exit_code(), 1);
    }
    let opts = CheckOptions {
        build_args: vec![],
        target: Some("nope".into()),
    };
    let r = check("FROM a AS x\n", "Dockerfile", &opts);
    assert_eq!(
        r.error.map(|e| e.to_string()).as_deref(),
        Some("Dockerfile: target stage \"nope\" could not be found")
    );
}

#[test]
fn output_formats() {
    let r = check(
        "FROM a\nCMD echo hi\n",
        "Dockerfile",
        &CheckOptions::default(),
    );
    assert_eq!(
        format_text(&r),
        "WARNING: JSONArgsRecommended - JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 2)\n"
    );
    let v: serde_json::Value = serde_json::from_str(&format_json(&r)).expect("valid json");
    assert_eq!(v["warnings"][0]["ruleName"], "JSONArgsRecommended");
    assert_eq!(
        v["warnings"][0]["location"]["ranges"][0]["start"]["line"],
        2
    );
    assert!(v["error"].is_null());
}

#[test]
fn every_rule_has_a_doc_page() {
    let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/lint");
    for rule in rules::ALL {
        let page = format!("{docs}/{}.md", rule.name);
        assert!(std::path::Path::new(&page).exists(), "missing {page}");
    }
}
