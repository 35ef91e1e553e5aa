//! The build-check rules as data (BuildKit's `linter/ruleset.go`). Adding a rule means one
//! value here, one entry in `ALL`, one page in `docs/lint/<Name>.md`, and a call where the
//! problem is detected.

/// One check: its name, one-line description, documentation link and message.
#[derive(Debug)]
pub struct Rule {
    pub name: &'static str,
    pub description: &'static str,
    pub url: &'static str,
    /// Experimental rules run only when `# check=experimental=Name|all` asks for them.
    pub experimental: bool,
    /// Builds the message from the rule's arguments (missing ones read as "").
    pub format: fn(&[&str]) -> String,
}

fn a<'a>(args: &[&'a str], i: usize) -> &'a str {
    args.get(i).copied().unwrap_or("")
}

fn did_you_mean(prefix: &str, suggestion: &str) -> String {
    if suggestion.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {prefix}{suggestion}?)")
    }
}

pub static STAGE_NAME_CASING: Rule = Rule {
    name: "StageNameCasing",
    description: "Stage names should be lowercase",
    url: "https://docs.docker.com/go/dockerfile/rule/stage-name-casing/",
    experimental: false,
    format: |x| format!("Stage name '{}' should be lowercase", a(x, 0)),
};

pub static FROM_AS_CASING: Rule = Rule {
    name: "FromAsCasing",
    description: "The 'as' keyword should match the case of the 'from' keyword",
    url: "https://docs.docker.com/go/dockerfile/rule/from-as-casing/",
    experimental: false,
    format: |x| {
        format!(
            "'{}' and '{}' keywords' casing do not match",
            a(x, 1),
            a(x, 0)
        )
    },
};

pub static NO_EMPTY_CONTINUATION: Rule = Rule {
    name: "NoEmptyContinuation",
    description: "Empty continuation lines will become errors in a future release",
    url: "https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/",
    experimental: false,
    format: |_| "Empty continuation line".to_string(),
};

pub static CONSISTENT_INSTRUCTION_CASING: Rule = Rule {
    name: "ConsistentInstructionCasing",
    description:
        "All commands within the Dockerfile should use the same casing (either upper or lower)",
    url: "https://docs.docker.com/go/dockerfile/rule/consistent-instruction-casing/",
    experimental: false,
    format: |x| {
        format!(
            "Command '{}' should match the case of the command majority ({})",
            a(x, 0),
            a(x, 1)
        )
    },
};

pub static DUPLICATE_STAGE_NAME: Rule = Rule {
    name: "DuplicateStageName",
    description: "Stage names should be unique",
    url: "https://docs.docker.com/go/dockerfile/rule/duplicate-stage-name/",
    experimental: false,
    format: |x| {
        format!(
            "Duplicate stage name {:?}, stage names should be unique",
            a(x, 0)
        )
    },
};

pub static RESERVED_STAGE_NAME: Rule = Rule {
    name: "ReservedStageName",
    description: "Reserved words should not be used as stage names",
    url: "https://docs.docker.com/go/dockerfile/rule/reserved-stage-name/",
    experimental: false,
    format: |x| {
        format!(
            "Stage name should not use the same name as reserved stage {:?}",
            a(x, 0)
        )
    },
};

pub static JSON_ARGS_RECOMMENDED: Rule = Rule {
    name: "JSONArgsRecommended",
    description: "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals",
    url: "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/",
    experimental: false,
    format: |x| format!("JSON arguments recommended for {} to prevent unintended behavior related to OS signals", a(x, 0)),
};

pub static MAINTAINER_DEPRECATED: Rule = Rule {
    name: "MaintainerDeprecated",
    description:
        "The MAINTAINER instruction is deprecated, use a label instead to define an image author",
    url: "https://docs.docker.com/go/dockerfile/rule/maintainer-deprecated/",
    experimental: false,
    format: |_| "Maintainer instruction is deprecated in favor of using label".to_string(),
};

pub static UNDEFINED_ARG_IN_FROM: Rule = Rule {
    name: "UndefinedArgInFrom",
    description: "FROM command must use declared ARGs",
    url: "https://docs.docker.com/go/dockerfile/rule/undefined-arg-in-from/",
    experimental: false,
    format: |x| {
        format!(
            "FROM argument '{}' is not declared{}",
            a(x, 0),
            did_you_mean("", a(x, 1))
        )
    },
};

pub static WORKDIR_RELATIVE_PATH: Rule = Rule {
    name: "WorkdirRelativePath",
    description: "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes",
    url: "https://docs.docker.com/go/dockerfile/rule/workdir-relative-path/",
    experimental: false,
    format: |x| format!("Relative workdir {:?} can have unexpected results if the base image changes", a(x, 0)),
};

pub static UNDEFINED_VAR: Rule = Rule {
    name: "UndefinedVar",
    description: "Variables should be defined before their use",
    url: "https://docs.docker.com/go/dockerfile/rule/undefined-var/",
    experimental: false,
    format: |x| {
        format!(
            "Usage of undefined variable '${}'{}",
            a(x, 0),
            did_you_mean("$", a(x, 1))
        )
    },
};

pub static MULTIPLE_INSTRUCTIONS_DISALLOWED: Rule = Rule {
    name: "MultipleInstructionsDisallowed",
    description: "Multiple instructions of the same type should not be used in the same stage",
    url: "https://docs.docker.com/go/dockerfile/rule/multiple-instructions-disallowed/",
    experimental: false,
    format: |x| {
        format!(
            "Multiple {} instructions should not be used in the same stage because only the last one will be used",
            a(x, 0)
        )
    },
};

pub static LEGACY_KEY_VALUE_FORMAT: Rule = Rule {
    name: "LegacyKeyValueFormat",
    description: "Legacy key/value format with whitespace separator should not be used",
    url: "https://docs.docker.com/go/dockerfile/rule/legacy-key-value-format/",
    experimental: false,
    format: |x| {
        format!(
            "\"{0} key=value\" should be used instead of legacy \"{0} key value\" format",
            a(x, 0)
        )
    },
};

pub static REDUNDANT_TARGET_PLATFORM: Rule = Rule {
    name: "RedundantTargetPlatform",
    description: "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
    url: "https://docs.docker.com/go/dockerfile/rule/redundant-target-platform/",
    experimental: false,
    format: |x| format!("Setting platform to predefined {} in FROM is redundant as this is the default behavior", a(x, 0)),
};

pub static SECRETS_USED_IN_ARG_OR_ENV: Rule = Rule {
    name: "SecretsUsedInArgOrEnv",
    description: "Sensitive data should not be used in the ARG or ENV commands",
    url: "https://docs.docker.com/go/dockerfile/rule/secrets-used-in-arg-or-env/",
    experimental: false,
    format: |x| {
        format!(
            "Do not use ARG or ENV instructions for sensitive data ({} {:?})",
            a(x, 0),
            a(x, 1)
        )
    },
};

pub static INVALID_DEFAULT_ARG_IN_FROM: Rule = Rule {
    name: "InvalidDefaultArgInFrom",
    description: "Default value for global ARG results in an empty or invalid base image name",
    url: "https://docs.docker.com/go/dockerfile/rule/invalid-default-arg-in-from/",
    experimental: false,
    format: |x| {
        format!(
            "Default value for ARG {} results in empty or invalid base image name",
            a(x, 0)
        )
    },
};

pub static FROM_PLATFORM_FLAG_CONST_DISALLOWED: Rule = Rule {
    name: "FromPlatformFlagConstDisallowed",
    description: "FROM --platform flag should not use a constant value",
    url: "https://docs.docker.com/go/dockerfile/rule/from-platform-flag-const-disallowed/",
    experimental: false,
    format: |x| {
        format!(
            "FROM --platform flag should not use constant value {:?}",
            a(x, 0)
        )
    },
};

pub static INVALID_DEFINITION_DESCRIPTION: Rule = Rule {
    name: "InvalidDefinitionDescription",
    description: "Comment for build stage or argument should follow the format: `# <arg/stage name> <description>`. If this is not intended to be a description comment, add an empty line or comment between the instruction and the comment.",
    url: "https://docs.docker.com/go/dockerfile/rule/invalid-definition-description/",
    experimental: true,
    format: |x| format!("Comment for {} should follow the format: `# {} <description>`", a(x, 0), a(x, 1)),
};

pub static EXPOSE_PROTO_CASING: Rule = Rule {
    name: "ExposeProtoCasing",
    description: "Protocol in EXPOSE instruction should be lowercase",
    url: "https://docs.docker.com/go/dockerfile/rule/expose-proto-casing/",
    experimental: false,
    format: |x| {
        format!(
            "Defined protocol '{}' in EXPOSE instruction should be lowercase",
            a(x, 0)
        )
    },
};

pub static EXPOSE_INVALID_FORMAT: Rule = Rule {
    name: "ExposeInvalidFormat",
    description: "IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release",
    url: "https://docs.docker.com/go/dockerfile/rule/expose-invalid-format/",
    experimental: false,
    format: |x| format!("EXPOSE instruction should not define an IP address or host-port mapping, found '{}'", a(x, 0)),
};

/// Every rule, in BuildKit's order.
pub static ALL: [&Rule; 20] = [
    &STAGE_NAME_CASING,
    &FROM_AS_CASING,
    &NO_EMPTY_CONTINUATION,
    &CONSISTENT_INSTRUCTION_CASING,
    &DUPLICATE_STAGE_NAME,
    &RESERVED_STAGE_NAME,
    &JSON_ARGS_RECOMMENDED,
    &MAINTAINER_DEPRECATED,
    &UNDEFINED_ARG_IN_FROM,
    &WORKDIR_RELATIVE_PATH,
    &UNDEFINED_VAR,
    &MULTIPLE_INSTRUCTIONS_DISALLOWED,
    &LEGACY_KEY_VALUE_FORMAT,
    &REDUNDANT_TARGET_PLATFORM,
    &SECRETS_USED_IN_ARG_OR_ENV,
    &INVALID_DEFAULT_ARG_IN_FROM,
    &FROM_PLATFORM_FLAG_CONST_DISALLOWED,
    &INVALID_DEFINITION_DESCRIPTION,
    &EXPOSE_PROTO_CASING,
    &EXPOSE_INVALID_FORMAT,
];

/// The rule named `name`.
pub fn by_name(name: &str) -> Option<&'static Rule> {
    ALL.iter().copied().find(|r| r.name == name)
}
