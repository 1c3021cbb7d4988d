//! Credentials: cloud keys, VCS and SaaS tokens, JWTs, private keys,
//! connection strings and generic high-entropy assignments.
//!
//! The table covers the families of gitleaks' default configuration (v8.2x),
//! with the regexes adapted: ASCII mode, no leading `[\w.-]{0,50}?` context
//! (the reported span is the capture group, so the context is not needed),
//! and validators instead of allow-lists. Rule ids follow gitleaks' ids so
//! that policies written for one read naturally for the other.

use crate::finding::Category::Secret;
use crate::finding::{Confidence, Direction};
use crate::rules::{Rule, entropy_3, entropy_3_5, entropy_4, is_placeholder, not_placeholder, shannon_entropy};
use std::ops::Range;

/// Names that contain a credential word but name something else: pagination
/// and sync cursors, CSRF tokens, token counts, secret references, public
/// keys (lowercase, alphanumerics only).
pub(crate) const NOT_CREDENTIAL_NAMES: &[&str] = &[
    "pagetoken",
    "nexttoken",
    "continuationtoken",
    "synctoken",
    "cursor",
    "csrf",
    "tokentype",
    "tokenizer",
    "tokencount",
    "tokens",
    "tokenurl",
    "tokenendpoint",
    "secretname",
    "secretid",
    "secretref",
    "keyid",
    "publickey",
    "passwordpolicy",
    "passwordhint",
    "expires",
];

/// Whether `name` (lowercase alphanumerics) is one of [`NOT_CREDENTIAL_NAMES`].
pub(crate) fn names_non_credential(name: &[u8]) -> bool {
    NOT_CREDENTIAL_NAMES.iter().any(|n| name.windows(n.len()).any(|w| w == n.as_bytes()))
}

/// Context check of generic assignments: reads the whole name the keyword is
/// part of (`nextPageToken`, `csrf_token`) and drops non-credentials.
fn credential_name(text: &[u8], m: Range<usize>, confidence: Confidence, _: Direction) -> Option<Confidence> {
    let ident = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    let before = text.get(m.start.saturating_sub(32)..m.start).unwrap_or(&[]);
    let prefix = before.len() - before.iter().rev().take_while(|b| ident(b)).count();
    let own = text.get(m.clone()).unwrap_or(&[]).iter().take(48).take_while(|b| ident(b));
    let name: Vec<u8> =
        before[prefix..].iter().chain(own).filter(|b| b.is_ascii_alphanumeric()).map(u8::to_ascii_lowercase).collect();
    (!names_non_credential(&name)).then_some(confidence)
}

/// `<keyword>[name] <assignment operator> <quote> (value) <end>`: the shape
/// of `twitter_api_key = "…"`, `"datadog": "…"`, `SENTRY_TOKEN: …`. The
/// keyword is ASCII case-insensitive; group 1 is the value.
macro_rules! assign {
    ($key:literal, $value:literal) => {
        concat!(
            "(?i:",
            $key,
            r#")[ \t\w.-]{0,20}[\s'"]{0,3}(?:=|>|:{1,3}=|\|\||:|=>|\?=|,)[\x60'"\s=]{0,5}("#,
            $value,
            r#")(?:[\x60'"\s;,]|\\[nrt]|$)"#
        )
    };
}

/// A prefixed token at a word start, followed by a delimiter (a sentence's
/// closing period included); group 1 is the token.
macro_rules! token {
    ($body:literal) => {
        concat!(r"\b(", $body, r#")(?:[\x60'"\s;,<>)\]}|&]|\\[nrt]|\.(?:[\s\x60'")\]}]|$)|$)"#)
    };
}

/// Value validator for connection-string and basic-auth passwords: any
/// non-placeholder of at least three bytes.
fn password_value(value: &[u8]) -> bool {
    value.len() >= 3 && !is_placeholder(value)
}

/// Generic assignments: long enough, high entropy, not an identifier-looking
/// word (`MY_SECRET_NAME`), not a placeholder.
fn generic_value(value: &[u8]) -> bool {
    value.len() >= 12
        && !value.iter().all(|b| b.is_ascii_alphabetic() || matches!(b, b'_' | b'.' | b'-'))
        && !value.iter().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-'))
        && entropy_3_5(value)
}

/// Quoted password assignments: at least 8 bytes, some variety, not a
/// placeholder.
fn password_assignment(value: &[u8]) -> bool {
    let inner = value.get(1..value.len().saturating_sub(1)).unwrap_or_default();
    inner.len() >= 8
        && inner.iter().any(|b| !b.is_ascii_alphabetic())
        && !is_placeholder(inner)
        && shannon_entropy(inner) >= 2.5
}

/// AWS key ids: not the documentation example and some entropy.
fn aws_key_id(value: &[u8]) -> bool {
    !value.ends_with(b"EXAMPLE") && entropy_3(value)
}

/// The secrets table.
pub static RULES: &[Rule] = &[
    // --- Cloud providers -------------------------------------------------
    Rule::new("aws-access-token", Secret, r"\b((?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})\b")
        .keywords(&["a3t", "akia", "asia", "abia", "acca"])
        .group(1)
        .validator(aws_key_id)
        .high(),
    Rule::new(
        "aws-secret-access-key",
        Secret,
        assign!(r"aws[_.-]?secret[_.-]?(?:access[_.-]?)?key|secret[_.-]?access[_.-]?key", r"[A-Za-z0-9/+]{40}"),
    )
    .keywords(&["aws_secret", "aws-secret", "aws.secret", "awssecret", "secret_access", "secret-access", "secretaccess"])
    .group(1)
    .validator(entropy_4)
    .high(),
    Rule::new("aws-mws-key", Secret, r"\bamzn\.mws\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
        .keywords(&["amzn.mws."])
        .high(),
    Rule::new("gcp-api-key", Secret, token!(r"AIza[\w-]{35}"))
        .keywords(&["aiza"])
        .group(1)
        .validator(entropy_3_5)
        .high(),
    Rule::new("gcp-service-account-key", Secret, r#""private_key_id"\s*:\s*"([a-f0-9]{40})""#)
        .keywords(&["private_key_id"])
        .group(1)
        .high(),
    Rule::new("gcp-oauth-client-secret", Secret, r"\bGOCSPX-[A-Za-z0-9_-]{28}")
        .keywords(&["gocspx-"])
        .validator(entropy_3)
        .high(),
    Rule::new("azure-storage-account-key", Secret, r"(?i:AccountKey)\s*=\s*([A-Za-z0-9+/]{86}==)")
        .keywords(&["accountkey"])
        .group(1)
        .high(),
    Rule::new("azure-sas-token", Secret, r"[?&]sig=((?:[A-Za-z0-9+/]|%2[BbFf]){40,80}(?:%3[Dd]|=){0,2})")
        .keywords(&["sig="])
        .group(1)
        .validator(entropy_3_5),
    Rule::new(
        "azure-ad-client-secret",
        Secret,
        r#"(?:^|[\\'"\x60\s>=:(,)])([a-zA-Z0-9_~.]{3}[0-9]Q~[a-zA-Z0-9_~.-]{31,34})(?:$|[\\'"\x60\s<),])"#,
    )
    .keywords(&["q~"])
    .group(1)
    .validator(entropy_3)
    .high(),
    Rule::new("alibaba-access-key-id", Secret, token!(r"LTAI[a-zA-Z0-9]{20}"))
        .keywords(&["ltai"])
        .group(1)
        .validator(entropy_3)
        .high(),
    Rule::new("alibaba-secret-key", Secret, assign!("alibaba", r"[a-zA-Z0-9]{30}"))
        .keywords(&["alibaba"])
        .group(1)
        .validator(entropy_3),
    Rule::new("digitalocean-pat", Secret, token!(r"dop_v1_[a-f0-9]{64}")).keywords(&["dop_v1_"]).group(1).high(),
    Rule::new("digitalocean-access-token", Secret, token!(r"doo_v1_[a-f0-9]{64}"))
        .keywords(&["doo_v1_"])
        .group(1)
        .high(),
    Rule::new("digitalocean-refresh-token", Secret, token!(r"dor_v1_[a-f0-9]{64}"))
        .keywords(&["dor_v1_"])
        .group(1)
        .high(),
    Rule::new(
        "heroku-api-key",
        Secret,
        assign!("heroku", r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
    )
    .keywords(&["heroku"])
    .group(1),
    Rule::new("heroku-api-key-v2", Secret, token!(r"HRKU-AA[0-9a-zA-Z_-]{58}"))
        .keywords(&["hrku-aa"])
        .group(1)
        .validator(entropy_4)
        .high(),
    Rule::new("cloudflare-api-key", Secret, assign!("cloudflare", r"[a-zA-Z0-9_-]{40}"))
        .keywords(&["cloudflare"])
        .group(1)
        .validator(entropy_3),
    Rule::new("cloudflare-global-api-key", Secret, assign!("cloudflare", r"[a-f0-9]{37}"))
        .keywords(&["cloudflare"])
        .group(1)
        .validator(entropy_3),
    Rule::new("cloudflare-origin-ca-key", Secret, token!(r"v1\.0-[a-f0-9]{24}-[a-f0-9]{146}"))
        .keywords(&["v1.0-"])
        .group(1)
        .high(),
    Rule::new("fastly-api-token", Secret, assign!("fastly", r"[a-zA-Z0-9=_-]{32}"))
        .keywords(&["fastly"])
        .group(1)
        .validator(entropy_3),
    Rule::new("netlify-access-token", Secret, assign!("netlify", r"[a-zA-Z0-9=_-]{40,46}"))
        .keywords(&["netlify"])
        .group(1)
        .validator(entropy_3),
    Rule::new("flyio-access-token", Secret, token!(r"fo1_[\w-]{43}|fm1[ar]_[a-zA-Z0-9+/]{100,}={0,3}|fm2_[a-zA-Z0-9+/]{100,}={0,3}"))
        .keywords(&["fo1_", "fm1a_", "fm1r_", "fm2_"])
        .group(1)
        .validator(entropy_4)
        .high(),
    Rule::new("hashicorp-tf-api-token", Secret, r"\b[a-zA-Z0-9]{14}\.atlasv1\.[a-zA-Z0-9_=-]{60,70}")
        .keywords(&["atlasv1"])
        .validator(entropy_3_5)
        .high(),
    Rule::new("vault-service-token", Secret, token!(r"hvs\.[\w-]{24,300}"))
        .keywords(&["hvs."])
        .group(1)
        .validator(entropy_3_5)
        .high(),
    Rule::new("vault-batch-token", Secret, token!(r"hvb\.[\w-]{138,300}"))
        .keywords(&["hvb."])
        .group(1)
        .validator(entropy_4)
        .high(),
    Rule::new("doppler-api-token", Secret, r"\bdp\.(?:pt|st|sa|ct|scim|audit)\.[a-zA-Z0-9]{40,44}")
        .keywords(&["dp.pt.", "dp.st.", "dp.sa.", "dp.ct.", "dp.scim.", "dp.audit."])
        .high(),
    Rule::new("pulumi-api-token", Secret, token!(r"pul-[a-f0-9]{40}")).keywords(&["pul-"]).group(1).high(),
    Rule::new("scalingo-api-token", Secret, token!(r"tk-us-[\w-]{48}")).keywords(&["tk-us-"]).group(1).high(),
    Rule::new("openshift-user-token", Secret, token!(r"sha256~[\w-]{43}"))
        .keywords(&["sha256~"])
        .group(1)
        .validator(entropy_3_5)
        .high(),
    Rule::new("infracost-api-token", Secret, token!(r"ico-[a-zA-Z0-9]{32}"))
        .keywords(&["ico-"])
        .group(1)
        .validator(entropy_3)
        .high(),
    // --- Source control and CI ---------------------------------------------
    Rule::new("github-pat", Secret, r"\bghp_[0-9a-zA-Z]{36}\b").keywords(&["ghp_"]).validator(entropy_3).high(),
    Rule::new("github-oauth", Secret, r"\bgho_[0-9a-zA-Z]{36}\b").keywords(&["gho_"]).validator(entropy_3).high(),
    Rule::new("github-app-token", Secret, r"\b(?:ghu|ghs)_[0-9a-zA-Z]{36}\b")
        .keywords(&["ghu_", "ghs_"])
        .validator(entropy_3)
        .high(),
    Rule::new("github-refresh-token", Secret, r"\bghr_[0-9a-zA-Z]{36,76}\b")
        .keywords(&["ghr_"])
        .validator(entropy_3)
        .high(),
    Rule::new("github-fine-grained-pat", Secret, r"\bgithub_pat_\w{82}\b")
        .keywords(&["github_pat_"])
        .validator(entropy_3)
        .high(),
    Rule::new("gitlab-pat", Secret, r"\bglpat-[\w-]{20,300}(?:\.[0-9a-z]{9})?").keywords(&["glpat-"]).validator(entropy_3).high(),
    Rule::new("gitlab-ptt", Secret, r"\bglptt-[0-9a-f]{40}\b").keywords(&["glptt-"]).high(),
    Rule::new("gitlab-rrt", Secret, r"\bGR1348941[\w-]{20}").keywords(&["gr1348941"]).validator(entropy_3).high(),
    Rule::new("gitlab-runner-authentication-token", Secret, r"\bglrt-[\w-]{20,300}(?:\.[0-9a-z]{9})?")
        .keywords(&["glrt-"])
        .validator(entropy_3)
        .high(),
    Rule::new("gitlab-deploy-token", Secret, r"\bgldt-[\w-]{20}").keywords(&["gldt-"]).validator(entropy_3).high(),
    Rule::new("gitlab-cicd-job-token", Secret, r"\bglcbt-[0-9a-zA-Z]{1,5}_[\w-]{20}")
        .keywords(&["glcbt-"])
        .validator(entropy_3)
        .high(),
    Rule::new("gitlab-feed-token", Secret, r"\bglft-[\w-]{20}").keywords(&["glft-"]).validator(entropy_3).high(),
    Rule::new("gitlab-incoming-mail-token", Secret, r"\bglimt-[\w-]{25}")
        .keywords(&["glimt-"])
        .validator(entropy_3)
        .high(),
    Rule::new("gitlab-kubernetes-agent-token", Secret, r"\bglagent-[\w-]{50}")
        .keywords(&["glagent-"])
        .validator(entropy_3)
        .high(),
    Rule::new("gitlab-oauth-app-secret", Secret, r"\bgloas-[\w-]{64}").keywords(&["gloas-"]).validator(entropy_3).high(),
    Rule::new("gitlab-scim-token", Secret, r"\bglsoat-[\w-]{20}").keywords(&["glsoat-"]).validator(entropy_3).high(),
    Rule::new("gitlab-feature-flag-client-token", Secret, r"\bglffct-[\w-]{20}")
        .keywords(&["glffct-"])
        .validator(entropy_3)
        .high(),
    Rule::new("gitlab-session-cookie", Secret, r"_gitlab_session=([0-9a-z]{32})")
        .keywords(&["_gitlab_session="])
        .group(1)
        .high(),
    Rule::new("bitbucket-client-id", Secret, assign!("bitbucket", r"[a-zA-Z0-9]{32}"))
        .keywords(&["bitbucket"])
        .group(1)
        .validator(entropy_3),
    Rule::new("bitbucket-client-secret", Secret, assign!("bitbucket", r"[a-zA-Z0-9=_-]{64}"))
        .keywords(&["bitbucket"])
        .group(1)
        .validator(entropy_3),
    Rule::new("bitbucket-app-password", Secret, token!(r"ATBB[A-Za-z0-9_=.-]{28,64}"))
        .keywords(&["atbb"])
        .group(1)
        .validator(entropy_3_5)
        .high(),
    Rule::new("droneci-access-token", Secret, assign!("droneci", r"[a-zA-Z0-9]{32}"))
        .keywords(&["droneci"])
        .group(1)
        .validator(entropy_3),
    Rule::new("travisci-access-token", Secret, assign!("travis", r"[a-zA-Z0-9]{22}"))
        .keywords(&["travis"])
        .group(1)
        .validator(entropy_3),
    Rule::new("codecov-access-token", Secret, assign!("codecov", r"[a-zA-Z0-9]{32}"))
        .keywords(&["codecov"])
        .group(1)
        .validator(entropy_3),
    Rule::new("sourcegraph-access-token", Secret, token!(r"sgp_(?:[a-fA-F0-9]{16}|local)_[a-fA-F0-9]{40}|sgp_[a-fA-F0-9]{40}"))
        .keywords(&["sgp_"])
        .group(1)
        .high(),
    Rule::new("harness-api-key", Secret, r"\b(?:pat|sat)\.[a-zA-Z0-9_-]{22}\.[a-zA-Z0-9]{24}\.[a-zA-Z0-9]{20}\b")
        .keywords(&["pat.", "sat."])
        .high(),
    Rule::new("sonar-api-token", Secret, assign!(r"sonar[_.-]?(?:login|token)", r"[a-zA-Z0-9=_-]{40}"))
        .keywords(&["sonar"])
        .group(1)
        .validator(entropy_3),
    Rule::new("snyk-api-token", Secret, assign!(r"snyk[_.-]?(?:(?:api|oauth)[_.-]?)?(?:key|token)", r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"))
        .keywords(&["snyk"])
        .group(1),
    Rule::new("octopus-deploy-api-key", Secret, token!(r"API-[A-Z0-9]{26}"))
        .keywords(&["api-"])
        .group(1)
        .validator(entropy_3),
    // --- Package registries --------------------------------------------------
    Rule::new("npm-access-token", Secret, token!(r"npm_[A-Za-z0-9]{36}"))
        .keywords(&["npm_"])
        .group(1)
        .validator(entropy_3)
        .high(),
    Rule::new("pypi-upload-token", Secret, r"\bpypi-AgEIcHlwaS5vcmc[\w-]{50,1000}")
        .keywords(&["pypi-ageichlwas5vcmc"])
        .high(),
    Rule::new("rubygems-api-token", Secret, token!(r"rubygems_[a-f0-9]{48}")).keywords(&["rubygems_"]).group(1).high(),
    Rule::new("clojars-api-token", Secret, r"\bCLOJARS_[a-zA-Z0-9]{60}\b").keywords(&["clojars_"]).high(),
    Rule::new("docker-hub-pat", Secret, token!(r"dckr_(?:pat|oat)_[A-Za-z0-9_-]{20,}"))
        .keywords(&["dckr_pat_", "dckr_oat_"])
        .group(1)
        .validator(entropy_3)
        .high(),
    Rule::new("artifactory-api-key", Secret, r"\bAKCp[A-Za-z0-9]{69}\b").keywords(&["akcp"]).validator(entropy_4).high(),
    Rule::new("artifactory-reference-token", Secret, r"\bcmVmd[A-Za-z0-9]{59}\b")
        .keywords(&["cmvmd"])
        .validator(entropy_4)
        .high(),
    Rule::new("jfrog-api-key", Secret, assign!("jfrog|artifactory|bintray|xray", r"[a-zA-Z0-9]{73}|[a-zA-Z0-9]{64}"))
        .keywords(&["jfrog", "artifactory", "bintray", "xray"])
        .group(1)
        .validator(entropy_3),
    // --- Chat and collaboration ----------------------------------------------
    Rule::new("slack-bot-token", Secret, r"\bxoxb-[0-9]{8,14}-[a-zA-Z0-9-]{18,}").keywords(&["xoxb-"]).high(),
    Rule::new("slack-user-token", Secret, r"\bxox[pe](?:-[0-9]{10,13}){3}-[a-zA-Z0-9-]{28,34}")
        .keywords(&["xoxp-", "xoxe-"])
        .high(),
    Rule::new("slack-app-token", Secret, r"(?i)\bxapp-[0-9]-[A-Z0-9]+-[0-9]+-[a-z0-9]+")
        .keywords(&["xapp-"])
        .validator(entropy_3)
        .high(),
    Rule::new("slack-legacy-workspace-token", Secret, r"\bxox[ar]-(?:[0-9]-)?[0-9a-zA-Z]{8,48}")
        .keywords(&["xoxa-", "xoxr-"])
        .validator(entropy_3)
        .high(),
    Rule::new("slack-legacy-token", Secret, r"\bxox[os]-[0-9]+-[0-9]+-[0-9]+-[a-fA-F0-9]+")
        .keywords(&["xoxo-", "xoxs-"])
        .high(),
    Rule::new("slack-config-access-token", Secret, r"(?i)\bxoxe\.xox[bp]-[0-9]-[A-Z0-9]{163,166}")
        .keywords(&["xoxe.xox"])
        .high(),
    Rule::new("slack-config-refresh-token", Secret, r"(?i)\bxoxe-[0-9]-[A-Z0-9]{146}").keywords(&["xoxe-"]).high(),
    Rule::new(
        "slack-webhook-url",
        Secret,
        r"(?:https?://)?hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/]{43,56}",
    )
    .keywords(&["hooks.slack.com"])
    .high(),
    Rule::new(
        "microsoft-teams-webhook",
        Secret,
        r"https://[a-zA-Z0-9-]+\.webhook\.office\.com/webhookb2/[a-zA-Z0-9-]{36}@[a-zA-Z0-9-]{36}/IncomingWebhook/[a-zA-Z0-9]{32}/[a-zA-Z0-9-]{36}",
    )
    .keywords(&["webhook.office.com"])
    .high(),
    Rule::new(
        "discord-webhook-url",
        Secret,
        r"https://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/[\w-]{60,68}",
    )
    .keywords(&["discord"])
    .high(),
    Rule::new("discord-api-token", Secret, assign!("discord", r"[a-f0-9]{64}"))
        .keywords(&["discord"])
        .group(1)
        .validator(entropy_3),
    Rule::new("discord-client-secret", Secret, assign!("discord", r"[a-zA-Z0-9=_-]{32}"))
        .keywords(&["discord"])
        .group(1)
        .validator(entropy_3_5),
    Rule::new(
        "discord-bot-token",
        Secret,
        r"\b[MNO][A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38}\b",
    )
    .validator(entropy_3_5),
    Rule::new("telegram-bot-api-token", Secret, r"\b([0-9]{8,10}:AA[A-Za-z0-9_-]{33})\b")
        .keywords(&[":aa"])
        .group(1)
        .high(),
    Rule::new("mattermost-access-token", Secret, assign!("mattermost", r"[a-zA-Z0-9]{26}"))
        .keywords(&["mattermost"])
        .group(1)
        .validator(entropy_3),
    Rule::new("gitter-access-token", Secret, assign!("gitter", r"[a-zA-Z0-9_-]{40}"))
        .keywords(&["gitter"])
        .group(1)
        .validator(entropy_3),
    Rule::new("atlassian-api-token", Secret, r"\bATATT3[A-Za-z0-9_=-]{186}").keywords(&["atatt3"]).high(),
    Rule::new("atlassian-api-token", Secret, assign!("atlassian|confluence|jira", r"[a-zA-Z0-9]{24}"))
        .keywords(&["atlassian", "confluence", "jira"])
        .group(1)
        .validator(entropy_3_5),
    Rule::new("linear-api-key", Secret, r"\blin_api_[a-zA-Z0-9]{40}\b").keywords(&["lin_api_"]).high(),
    Rule::new("linear-client-secret", Secret, assign!("linear", r"[a-f0-9]{32}"))
        .keywords(&["linear"])
        .group(1)
        .validator(entropy_3),
    Rule::new("notion-api-token", Secret, r"\bntn_[0-9]{11}[A-Za-z0-9]{35}\b").keywords(&["ntn_"]).high(),
    Rule::new("notion-api-token", Secret, r"\bsecret_[A-Za-z0-9]{43}\b").keywords(&["secret_"]).validator(entropy_4),
    Rule::new("asana-client-secret", Secret, assign!("asana", r"[a-zA-Z0-9]{32}"))
        .keywords(&["asana"])
        .group(1)
        .validator(entropy_3),
    Rule::new("intercom-api-key", Secret, assign!("intercom", r"[a-zA-Z0-9=_-]{60}"))
        .keywords(&["intercom"])
        .group(1)
        .validator(entropy_3),
    Rule::new("zendesk-secret-key", Secret, assign!("zendesk", r"[a-zA-Z0-9]{40}"))
        .keywords(&["zendesk"])
        .group(1)
        .validator(entropy_3),
    Rule::new("frameio-api-token", Secret, r"\bfio-u-[a-zA-Z0-9_=-]{64}").keywords(&["fio-u-"]).high(),
    Rule::new("typeform-api-token", Secret, token!(r"tfp_[a-zA-Z0-9_.=-]{59}")).keywords(&["tfp_"]).group(1).high(),
    Rule::new("readme-api-token", Secret, token!(r"rdme_[a-z0-9]{70}")).keywords(&["rdme_"]).group(1).high(),
    Rule::new("postman-api-token", Secret, r"\bPMAK-[a-fA-F0-9]{24}-[a-fA-F0-9]{34}\b").keywords(&["pmak-"]).high(),
    Rule::new("prefect-api-token", Secret, token!(r"pnu_[a-zA-Z0-9]{36}")).keywords(&["pnu_"]).group(1).high(),
    Rule::new("launchdarkly-access-token", Secret, assign!("launchdarkly", r"[a-zA-Z0-9=_-]{40}"))
        .keywords(&["launchdarkly"])
        .group(1)
        .validator(entropy_3),
    Rule::new("contentful-delivery-api-token", Secret, assign!("contentful", r"[a-zA-Z0-9=_-]{43}"))
        .keywords(&["contentful"])
        .group(1)
        .validator(entropy_3),
    Rule::new("squarespace-access-token", Secret, assign!("squarespace", r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"))
        .keywords(&["squarespace"])
        .group(1),
    Rule::new("hubspot-api-key", Secret, assign!("hubspot", r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|pat-(?:na|eu)1-[0-9a-fA-F-]{36}"))
        .keywords(&["hubspot"])
        .group(1),
    Rule::new("1password-secret-key", Secret, r"\bA3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}\b")
        .keywords(&["a3-"])
        .validator(entropy_3)
        .high(),
    Rule::new("1password-service-account-token", Secret, r"\bops_eyJ[a-zA-Z0-9+/]{250,}={0,3}")
        .keywords(&["ops_eyj"])
        .high(),
    // --- Payments and commerce ---------------------------------------------
    Rule::new("stripe-access-token", Secret, token!(r"(?:sk|rk)_(?:test|live|prod)_[a-zA-Z0-9]{10,99}"))
        .keywords(&["sk_test", "sk_live", "sk_prod", "rk_test", "rk_live", "rk_prod"])
        .group(1)
        .validator(not_placeholder)
        .high(),
    Rule::new("stripe-webhook-secret", Secret, r"\bwhsec_[a-zA-Z0-9+/=]{32,}").keywords(&["whsec_"]).validator(entropy_3).high(),
    Rule::new("square-access-token", Secret, token!(r"(?:EAAA|sq0atp-)[\w-]{22,60}"))
        .keywords(&["sq0atp-", "eaaa"])
        .group(1)
        .validator(entropy_3),
    Rule::new("square-oauth-secret", Secret, r"\bsq0csp-[\w-]{43}").keywords(&["sq0csp-"]).high(),
    Rule::new("shopify-access-token", Secret, r"\bshpat_[a-fA-F0-9]{32}\b").keywords(&["shpat_"]).high(),
    Rule::new("shopify-custom-access-token", Secret, r"\bshpca_[a-fA-F0-9]{32}\b").keywords(&["shpca_"]).high(),
    Rule::new("shopify-private-app-access-token", Secret, r"\bshppa_[a-fA-F0-9]{32}\b").keywords(&["shppa_"]).high(),
    Rule::new("shopify-shared-secret", Secret, r"\bshpss_[a-fA-F0-9]{32}\b").keywords(&["shpss_"]).high(),
    Rule::new("flutterwave-secret-key", Secret, r"\bFLWSECK(?:_TEST)?-[a-hA-H0-9]{32}-X").keywords(&["flwseck"]).high(),
    Rule::new("gocardless-api-token", Secret, assign!("gocardless", r"live_[a-zA-Z0-9_=-]{40}"))
        .keywords(&["gocardless"])
        .group(1)
        .high(),
    Rule::new("plaid-api-token", Secret, r"\baccess-(?:sandbox|development|production)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
        .keywords(&["access-sandbox-", "access-development-", "access-production-"])
        .high(),
    Rule::new("plaid-secret-key", Secret, assign!("plaid", r"[a-zA-Z0-9]{30}"))
        .keywords(&["plaid"])
        .group(1)
        .validator(entropy_3_5),
    Rule::new("coinbase-access-token", Secret, assign!("coinbase", r"[a-zA-Z0-9_-]{64}"))
        .keywords(&["coinbase"])
        .group(1)
        .validator(entropy_3),
    Rule::new("kraken-access-token", Secret, assign!("kraken", r"[a-zA-Z0-9/=_+-]{80,90}"))
        .keywords(&["kraken"])
        .group(1)
        .validator(entropy_3_5),
    Rule::new("kucoin-secret-key", Secret, assign!("kucoin", r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[a-f0-9]{24}"))
        .keywords(&["kucoin"])
        .group(1),
    Rule::new("bittrex-access-key", Secret, assign!("bittrex", r"[a-zA-Z0-9]{32}"))
        .keywords(&["bittrex"])
        .group(1)
        .validator(entropy_3),
    Rule::new("finicity-client-secret", Secret, assign!("finicity", r"[a-zA-Z0-9]{20}|[a-f0-9]{32}"))
        .keywords(&["finicity"])
        .group(1)
        .validator(entropy_3),
    Rule::new("shippo-api-token", Secret, token!(r"shippo_(?:live|test)_[a-fA-F0-9]{40}")).keywords(&["shippo_"]).group(1).high(),
    Rule::new("easypost-api-token", Secret, r"\bEZ[AT]K[a-zA-Z0-9]{54}\b").keywords(&["ezak", "eztk"]).high(),
    Rule::new("duffel-api-token", Secret, r"\bduffel_(?:test|live)_[a-zA-Z0-9_=-]{43}").keywords(&["duffel_"]).high(),
    // --- Messaging and e-mail -----------------------------------------------
    Rule::new("twilio-api-key", Secret, r"\bSK[0-9a-fA-F]{32}\b").validator(entropy_3),
    Rule::new("twilio-auth-token", Secret, assign!("twilio", r"[a-f0-9]{32}"))
        .keywords(&["twilio"])
        .group(1)
        .validator(entropy_3),
    Rule::new("sendgrid-api-token", Secret, token!(r"SG\.[a-zA-Z0-9_-]{22}\.[a-zA-Z0-9_-]{43}"))
        .keywords(&["sg."])
        .group(1)
        .high(),
    Rule::new("sendinblue-api-token", Secret, token!(r"xkeysib-[a-f0-9]{64}-[a-zA-Z0-9]{16}"))
        .keywords(&["xkeysib-"])
        .group(1)
        .high(),
    Rule::new("mailgun-private-api-token", Secret, assign!("mailgun", r"key-[a-f0-9]{32}"))
        .keywords(&["mailgun"])
        .group(1)
        .high(),
    Rule::new("mailgun-pub-key", Secret, assign!("mailgun", r"pubkey-[a-f0-9]{32}")).keywords(&["mailgun"]).group(1),
    Rule::new("mailgun-signing-key", Secret, assign!("mailgun", r"[a-h0-9]{32}-[a-h0-9]{8}-[a-h0-9]{8}"))
        .keywords(&["mailgun"])
        .group(1)
        .high(),
    Rule::new("mailchimp-api-key", Secret, r"\b([0-9a-f]{32}-us[0-9]{1,2})\b").keywords(&["-us"]).group(1).high(),
    Rule::new("messagebird-api-token", Secret, assign!(r"message[_-]?bird", r"[a-zA-Z0-9]{25}"))
        .keywords(&["messagebird", "message-bird", "message_bird"])
        .group(1)
        .validator(entropy_3),
    Rule::new("sendbird-access-token", Secret, assign!("sendbird", r"[a-f0-9]{40}"))
        .keywords(&["sendbird"])
        .group(1)
        .validator(entropy_3),
    // --- AI and data platforms -----------------------------------------------
    Rule::new("openai-api-key", Secret, r"\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,400}")
        .keywords(&["sk-proj-", "sk-svcacct-", "sk-admin-"])
        .validator(entropy_4)
        .high(),
    Rule::new("openai-api-key", Secret, r"\bsk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}\b").keywords(&["t3blbkfj"]).high(),
    Rule::new("openai-api-key", Secret, r"\bsk-[A-Za-z0-9]{48}\b").keywords(&["sk-"]).validator(entropy_4),
    Rule::new("anthropic-api-key", Secret, r"\bsk-ant-[a-z]{3,6}[0-9]{2}-[A-Za-z0-9_-]{32,400}")
        .keywords(&["sk-ant-"])
        .validator(entropy_4)
        .high(),
    Rule::new("huggingface-access-token", Secret, token!(r"hf_[A-Za-z0-9]{34}"))
        .keywords(&["hf_"])
        .group(1)
        .validator(entropy_3_5)
        .high(),
    Rule::new("huggingface-organization-api-token", Secret, token!(r"api_org_[A-Za-z0-9]{34}"))
        .keywords(&["api_org_"])
        .group(1)
        .validator(entropy_3_5)
        .high(),
    Rule::new("perplexity-api-key", Secret, r"\bpplx-[a-zA-Z0-9]{48}\b").keywords(&["pplx-"]).validator(entropy_4).high(),
    Rule::new("cohere-api-token", Secret, assign!("cohere|co_api_key", r"[a-zA-Z0-9]{40}"))
        .keywords(&["cohere", "co_api_key"])
        .group(1)
        .validator(entropy_4),
    Rule::new("databricks-api-token", Secret, token!(r"dapi[a-f0-9]{32}(?:-[0-9])?"))
        .keywords(&["dapi"])
        .group(1)
        .validator(entropy_3)
        .high(),
    Rule::new("planetscale-api-token", Secret, token!(r"pscale_(?:tkn|oauth|pw)_[\w=.-]{32,64}"))
        .keywords(&["pscale_tkn_", "pscale_oauth_", "pscale_pw_"])
        .group(1)
        .validator(entropy_3)
        .high(),
    Rule::new("confluent-secret-key", Secret, assign!("confluent", r"[a-zA-Z0-9]{64}"))
        .keywords(&["confluent"])
        .group(1)
        .validator(entropy_3),
    Rule::new("algolia-api-key", Secret, assign!("algolia", r"[a-zA-Z0-9]{32}"))
        .keywords(&["algolia"])
        .group(1)
        .validator(entropy_3),
    Rule::new("airtable-api-key", Secret, assign!("airtable", r"[a-zA-Z0-9]{17}|pat[a-zA-Z0-9]{14}\.[a-f0-9]{64}"))
        .keywords(&["airtable"])
        .group(1)
        .validator(entropy_3),
    Rule::new("adafruit-api-key", Secret, assign!("adafruit", r"[a-zA-Z0-9_-]{32}"))
        .keywords(&["adafruit"])
        .group(1)
        .validator(entropy_3),
    Rule::new("adobe-client-secret", Secret, token!(r"p8e-[a-zA-Z0-9]{32}")).keywords(&["p8e-"]).group(1).high(),
    Rule::new("mapbox-api-token", Secret, r"\b[ps]k\.eyJ[a-zA-Z0-9_-]{40,}\.[a-zA-Z0-9_-]{20,}").keywords(&["k.eyj"]),
    Rule::new("maxmind-license-key", Secret, token!(r"[A-Za-z0-9]{6}_[A-Za-z0-9]{29}_mmk"))
        .keywords(&["_mmk"])
        .group(1)
        .validator(entropy_4)
        .high(),
    // --- Monitoring and identity ---------------------------------------------
    Rule::new("datadog-access-token", Secret, assign!(r"datadog|dd[_-]?(?:api|app)[_-]?key", r"[a-zA-Z0-9]{32,40}"))
        .keywords(&["datadog", "dd_api", "dd-api", "dd_app", "dd-app", "ddapi", "ddapp"])
        .group(1)
        .validator(entropy_3),
    Rule::new("new-relic-user-api-key", Secret, r"\bNRAK-[A-Z0-9]{27}\b").keywords(&["nrak-"]).high(),
    Rule::new("new-relic-browser-api-token", Secret, r"\bNRJS-[a-f0-9]{19}\b").keywords(&["nrjs-"]).high(),
    Rule::new("new-relic-insert-key", Secret, r"\bNRII-[a-zA-Z0-9_-]{32}\b").keywords(&["nrii-"]).high(),
    Rule::new("new-relic-license-key", Secret, r"\b[a-fA-F0-9]{36}NRAL\b").keywords(&["nral"]).high(),
    Rule::new("sentry-user-token", Secret, token!(r"sntryu_[a-f0-9]{64}")).keywords(&["sntryu_"]).group(1).high(),
    Rule::new("sentry-org-token", Secret, r"\bsntrys_eyJ[a-zA-Z0-9+/=_-]{40,}").keywords(&["sntrys_"]).high(),
    Rule::new("sentry-access-token", Secret, assign!("sentry", r"[a-f0-9]{64}"))
        .keywords(&["sentry"])
        .group(1)
        .validator(entropy_3),
    Rule::new("grafana-api-key", Secret, token!(r"eyJrIjoi[A-Za-z0-9]{70,400}={0,3}")).keywords(&["eyjrijoi"]).group(1).high(),
    Rule::new("grafana-cloud-api-token", Secret, token!(r"glc_[A-Za-z0-9+/]{32,400}={0,3}"))
        .keywords(&["glc_"])
        .group(1)
        .validator(entropy_3_5)
        .high(),
    Rule::new("grafana-service-account-token", Secret, token!(r"glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}"))
        .keywords(&["glsa_"])
        .group(1)
        .high(),
    Rule::new("dynatrace-api-token", Secret, r"\bdt0c01\.[a-zA-Z0-9]{24}\.[a-zA-Z0-9]{64}\b").keywords(&["dt0c01."]).high(),
    Rule::new("sumologic-access-token", Secret, assign!("sumo", r"[a-zA-Z0-9]{64}"))
        .keywords(&["sumo"])
        .group(1)
        .validator(entropy_3),
    Rule::new("okta-access-token", Secret, assign!("okta", r"00[\w=-]{40}"))
        .keywords(&["okta"])
        .group(1)
        .validator(entropy_4),
    Rule::new("auth0-client-secret", Secret, assign!("auth0", r"[a-zA-Z0-9_-]{64}"))
        .keywords(&["auth0"])
        .group(1)
        .validator(entropy_4),
    // --- Social --------------------------------------------------------------
    Rule::new("facebook-page-access-token", Secret, token!(r"EAA[MC][a-zA-Z0-9]{100,}"))
        .keywords(&["eaam", "eaac"])
        .group(1)
        .validator(entropy_4)
        .high(),
    Rule::new("facebook-secret", Secret, assign!("facebook", r"[a-f0-9]{32}"))
        .keywords(&["facebook"])
        .group(1)
        .validator(entropy_3),
    Rule::new("twitter-bearer-token", Secret, assign!("twitter", r"A{22}[a-zA-Z0-9%]{80,100}"))
        .keywords(&["twitter"])
        .group(1)
        .high(),
    Rule::new("twitter-access-token", Secret, assign!("twitter", r"[0-9]{15,25}-[a-zA-Z0-9]{20,40}"))
        .keywords(&["twitter"])
        .group(1),
    Rule::new("twitter-api-secret", Secret, assign!("twitter", r"[a-zA-Z0-9]{50}|[a-zA-Z0-9]{45}|[a-zA-Z0-9]{25}"))
        .keywords(&["twitter"])
        .group(1)
        .validator(entropy_3_5),
    Rule::new("linkedin-client-secret", Secret, assign!(r"linked[_-]?in", r"[a-zA-Z0-9]{16}"))
        .keywords(&["linkedin", "linked_in", "linked-in"])
        .group(1)
        .validator(entropy_3),
    Rule::new("twitch-api-token", Secret, assign!("twitch", r"[a-zA-Z0-9]{30}"))
        .keywords(&["twitch"])
        .group(1)
        .validator(entropy_3),
    Rule::new("yandex-api-key", Secret, assign!("yandex", r"AQVN[A-Za-z0-9_-]{35,38}|YC[a-zA-Z0-9_-]{38}|t1\.[A-Z0-9a-z_-]+={0,2}\.[A-Z0-9a-z_-]{86}={0,2}"))
        .keywords(&["yandex"])
        .group(1)
        .high(),
    Rule::new("dropbox-api-token", Secret, assign!("dropbox", r"sl\.[a-zA-Z0-9=_-]{135}|[a-zA-Z0-9]{11}AAAAAAAAAA[a-zA-Z0-9=_-]{43}"))
        .keywords(&["dropbox"])
        .group(1)
        .high(),
    Rule::new("age-secret-key", Secret, r"\bAGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}\b")
        .keywords(&["age-secret-key-1"])
        .high(),
    Rule::new("sidekiq-secret", Secret, assign!("bundle_enterprise__contribsys__com|bundle_gems__contribsys__com", r"[a-f0-9]{8}:[a-f0-9]{8}"))
        .keywords(&["bundle_enterprise__contribsys__com", "bundle_gems__contribsys__com"])
        .group(1)
        .high(),
    Rule::new("intra42-client-secret", Secret, token!(r"s-s4t2(?:ud|af)-[a-f0-9]{64}"))
        .keywords(&["s-s4t2ud-", "s-s4t2af-"])
        .group(1)
        .high(),
    Rule::new("settlemint-access-token", Secret, token!(r"sm_(?:aat|pat|sat)_[a-zA-Z0-9]{16}"))
        .keywords(&["sm_aat_", "sm_pat_", "sm_sat_"])
        .group(1)
        .validator(entropy_3)
        .high(),
    // --- Structural: keys, JWTs, connection strings ----------------------------
    Rule::new(
        "private-key",
        Secret,
        r"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----(?:[A-Za-z0-9+/=\s:,.\\-]{16,}?-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=\s:,.\\-]{16,})",
    )
    .keywords(&["-----begin"])
    .window(16 * 1024)
    .high(),
    Rule::new("putty-private-key", Secret, r"PuTTY-User-Key-File-[0-9]+:\s*[\w-]+")
        .keywords(&["putty-user-key-file"])
        .high(),
    Rule::new("jwt", Secret, r"\bey[A-Za-z0-9_-]{15,}\.ey[A-Za-z0-9_-]{15,}\.[A-Za-z0-9_-]*").keywords(&["eyj"]),
    Rule::new(
        "connection-string-password",
        Secret,
        r#"(?i:\b(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|sqlserver|cockroachdb|clickhouse|jdbc:[a-z]+))://[^\s:@/"'<>]{0,128}:([^\s@/"'<>]{1,256})@"#,
    )
    .keywords(&["postgres", "mysql", "mariadb", "mongodb", "redis", "amqp", "mssql", "sqlserver", "cockroachdb", "clickhouse", "jdbc:"])
    .group(1)
    .validator(password_value)
    .high(),
    Rule::new(
        "authorization-header",
        Secret,
        r#"(?i:authorization)["']?\s*[:=]\s*["']?(?i:bearer|token|basic)\s+([A-Za-z0-9._~+/=-]{16,})"#,
    )
    .keywords(&["authorization"])
    .group(1)
    .validator(entropy_3),
    Rule::new(
        "curl-auth-header",
        Secret,
        r#"\bcurl\b[^\n]{0,500}?\s(?:-H|--header)\s*["']?(?i:authorization:\s*(?:bearer|token|basic)\s+|x-api-key:\s*|api-key:\s*)([\w=~@.+/-]{8,})"#,
    )
    .keywords(&["curl"])
    .window(1024)
    .group(1)
    .validator(entropy_3),
    Rule::new("curl-auth-user", Secret, r#"\bcurl\b[^\n]{0,500}?\s(?:-u|--user)\s*["']?[^\s:"']{1,64}:([^\s"']{3,128})"#)
        .keywords(&["curl"])
        .window(1024)
        .group(1)
        .validator(password_value),
    // --- Generic ---------------------------------------------------------------
    Rule::new(
        "generic-api-key",
        Secret,
        r#"(?i:secret|token|passw(?:or)?d|pwd|api[_.-]?key|apikey|access[_.-]?key|private[_.-]?key|client[_.-]?secret|auth[_.-]?(?:key|token)|credentials?|creds)[ \t\w.-]{0,20}[\s'"]{0,3}(?:=|:=|:{1,2}|=>|\?=)[\x60'"\s]{0,5}([\w.=+/~@#%^&*!$-]{12,150})(?:[\x60'"\s;,]|\\[nrt]|$)"#,
    )
    .keywords(&[
        "secret", "token", "passw", "pwd", "api_key", "api-key", "api.key", "apikey", "access_key", "access-key",
        "accesskey", "private_key", "private-key", "privatekey", "auth", "credential", "creds",
    ])
    .group(1)
    .validator(generic_value)
    .context(credential_name)
    .generic(),
    Rule::new(
        "password-assignment",
        Secret,
        r#"(?i:passw(?:or)?d|passwd|pwd)[ \t\w.-]{0,20}[\s'"]{0,3}(?:=|:=|:|=>)\s{0,5}("[^"\s]{8,64}"|'[^'\s]{8,64}')"#,
    )
    .keywords(&["passw", "pwd"])
    .group(1)
    .validator(password_assignment)
    .generic(),
];

#[cfg(test)]
mod tests {
    use crate::finding::{Direction, Finding};
    use crate::rules::{RuleSet, RuleSetOptions};
    use std::sync::OnceLock;

    fn set() -> &'static RuleSet {
        static SET: OnceLock<RuleSet> = OnceLock::new();
        SET.get_or_init(|| RuleSet::compile(super::RULES, &[], RuleSetOptions::default()).unwrap())
    }

    fn scan(text: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        set().scan(text, Direction::Response, &mut out);
        out
    }

    fn rules(text: &str) -> Vec<String> {
        scan(text).into_iter().map(|f| f.rule.into_owned()).collect()
    }

    #[track_caller]
    fn fires(text: &str, rule: &str, secret: &str) {
        let found = scan(text);
        let hit = found.iter().find(|f| f.rule == rule);
        let Some(hit) = hit else { panic!("{rule} did not fire on {text:?}: {found:?}") };
        assert_eq!(&text[hit.span.clone()], secret, "{rule}");
    }

    #[track_caller]
    fn silent(text: &str) {
        let found = scan(text);
        assert!(found.is_empty(), "{text:?} fired {found:?}");
    }

    // Synthetic tokens, built at run time so this file never contains a
    // literal that a secret scanner would flag.
    fn rand(alphabet: &str, n: usize, seed: u64) -> String {
        let a = alphabet.as_bytes();
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                a[(x % a.len() as u64) as usize] as char
            })
            .collect()
    }
    const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const HEX: &str = "0123456789abcdef";
    const UPPER32: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

    #[test]
    fn cloud_keys() {
        let id = format!("AKIA{}", rand(UPPER32, 16, 1));
        fires(&format!("aws_access_key_id = {id}\n"), "aws-access-token", &id);
        let secret = rand(&format!("{ALNUM}/+"), 40, 2);
        fires(&format!("aws_secret_access_key = \"{secret}\""), "aws-secret-access-key", &secret);
        let gcp = format!("AIza{}", rand(ALNUM, 35, 3));
        fires(&format!("{{\"key\":\"{gcp}\"}}"), "gcp-api-key", &gcp);
        let kid = rand(HEX, 40, 4);
        fires(
            &format!("{{\"type\": \"service_account\", \"private_key_id\": \"{kid}\"}}"),
            "gcp-service-account-key",
            &kid,
        );
        let acct = format!("{}==", rand(ALNUM, 86, 5));
        fires(
            &format!("DefaultEndpointsProtocol=https;AccountName=x;AccountKey={acct};"),
            "azure-storage-account-key",
            &acct,
        );
        let az = format!("abc8Q~{}", rand(ALNUM, 34, 6));
        fires(&format!("client_secret: {az}\n"), "azure-ad-client-secret", &az);
        let sig = format!("{}%3D", rand(ALNUM, 43, 7));
        fires(&format!("https://a.blob.core.windows.net/c?sv=2022-11-02&sr=b&sig={sig}"), "azure-sas-token", &sig);
    }

    #[test]
    fn aws_example_and_lookalikes_are_ignored() {
        silent("aws_access_key_id = AKIAIOSFODNN7EXAMPLE");
        silent("AKIAAAAAAAAAAAAAAAAA is not a key");
    }

    #[test]
    fn vcs_tokens() {
        for (prefix, rule) in [
            ("ghp_", "github-pat"),
            ("gho_", "github-oauth"),
            ("ghu_", "github-app-token"),
            ("ghs_", "github-app-token"),
            ("ghr_", "github-refresh-token"),
        ] {
            let t = format!("{prefix}{}", rand(ALNUM, 36, 8));
            fires(&format!("token: {t}"), rule, &t);
        }
        let t = format!("github_pat_{}", rand(ALNUM, 82, 9));
        fires(&format!("GH_TOKEN={t}"), "github-fine-grained-pat", &t);
        let t = format!("glpat-{}", rand(ALNUM, 20, 10));
        fires(&format!("\"{t}\""), "gitlab-pat", &t);
        let t = format!("ATBB{}", rand(ALNUM, 32, 11));
        fires(&format!("app password {t}"), "bitbucket-app-password", &t);
    }

    #[test]
    fn saas_tokens() {
        let cases: Vec<(String, &str)> = vec![
            (format!("xoxb-1234567890-1234567890123-{}", rand(ALNUM, 24, 12)), "slack-bot-token"),
            (
                format!(
                    "https://hooks.slack.com/services/T{}/B{}/{}",
                    rand(UPPER32, 8, 13),
                    rand(UPPER32, 8, 14),
                    rand(ALNUM, 24, 15)
                ),
                "slack-webhook-url",
            ),
            (format!("sk_live_{}", rand(ALNUM, 24, 16)), "stripe-access-token"),
            (format!("SK{}", rand(HEX, 32, 17)), "twilio-api-key"),
            (format!("SG.{}.{}", rand(ALNUM, 22, 18), rand(ALNUM, 43, 19)), "sendgrid-api-token"),
            (format!("{}-us12", rand(HEX, 32, 20)), "mailchimp-api-key"),
            (format!("npm_{}", rand(ALNUM, 36, 21)), "npm-access-token"),
            (format!("pypi-AgEIcHlwaS5vcmc{}", rand(ALNUM, 60, 22)), "pypi-upload-token"),
            (format!("dckr_pat_{}", rand(ALNUM, 27, 23)), "docker-hub-pat"),
            (format!("HRKU-AA{}", rand(ALNUM, 58, 24)), "heroku-api-key-v2"),
            (format!("dop_v1_{}", rand(HEX, 64, 25)), "digitalocean-pat"),
            (format!("shpat_{}", rand(HEX, 32, 26)), "shopify-access-token"),
            (format!("sq0atp-{}", rand(ALNUM, 22, 27)), "square-access-token"),
            (format!("123456789:AA{}", rand(ALNUM, 33, 28)), "telegram-bot-api-token"),
            (format!("sk-proj-{}", rand(ALNUM, 120, 29)), "openai-api-key"),
            (format!("sk-{}T3BlbkFJ{}", rand(ALNUM, 20, 30), rand(ALNUM, 20, 31)), "openai-api-key"),
            (format!("sk-ant-api03-{}AA", rand(ALNUM, 93, 32)), "anthropic-api-key"),
            (format!("hf_{}", rand(ALNUM, 34, 33)), "huggingface-access-token"),
            (format!("dapi{}", rand(HEX, 32, 34)), "databricks-api-token"),
            (format!("NRAK-{}", rand(UPPER32, 27, 35)), "new-relic-user-api-key"),
            (format!("sntryu_{}", rand(HEX, 64, 36)), "sentry-user-token"),
            (format!("ATATT3{}", rand(ALNUM, 186, 37)), "atlassian-api-token"),
            (format!("lin_api_{}", rand(ALNUM, 40, 38)), "linear-api-key"),
            (format!("ntn_{}{}", rand("0123456789", 11, 39), rand(ALNUM, 35, 40)), "notion-api-token"),
            (format!("PMAK-{}-{}", rand(HEX, 24, 41), rand(HEX, 34, 42)), "postman-api-token"),
            (format!("hvs.{}", rand(ALNUM, 95, 43)), "vault-service-token"),
            (format!("MTA{}.{}.{}", rand(ALNUM, 21, 44), rand(ALNUM, 6, 45), rand(ALNUM, 38, 46)), "discord-bot-token"),
        ];
        for (token, rule) in &cases {
            fires(&format!("value: {token} end"), rule, token);
        }
    }

    #[test]
    fn keyword_assignments() {
        let v = rand(HEX, 40, 47);
        fires(&format!("DATADOG_APP_KEY=\"{v}\""), "datadog-access-token", &v);
        let v = format!("00{}", rand(ALNUM, 40, 48));
        fires(&format!("okta_token: {v}"), "okta-access-token", &v);
        let v = rand(HEX, 64, 49);
        fires(&format!("sentry auth = {v};"), "sentry-access-token", &v);
    }

    #[test]
    fn jwt_and_private_key() {
        let jwt = format!("eyJhbGciOiJIUzI1NiJ9.eyJ{}.{}", rand(ALNUM, 40, 50), rand(ALNUM, 43, 51));
        fires(&format!("Authorization: Bearer {jwt}"), "jwt", &jwt);
        let body: String = (0..20).map(|i| format!("{}\n", rand(ALNUM, 64, 60 + i))).collect();
        let key = format!("-----BEGIN RSA PRIVATE KEY-----\n{body}-----END RSA PRIVATE KEY-----");
        fires(&format!("here:\n{key}\nthanks"), "private-key", &key);
        let escaped = key.replace('\n', "\\n");
        fires(&format!("{{\"private_key\": \"{escaped}\\n\"}}"), "private-key", &escaped);
        // Truncated output still flags the block.
        let cut = format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{}", rand(ALNUM, 70, 52));
        fires(&cut, "private-key", &cut);
        silent("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----");
    }

    #[test]
    fn connection_strings() {
        fires("DATABASE_URL=postgres://app:s3cr3t-Pw@db.internal:5432/app", "connection-string-password", "s3cr3t-Pw");
        fires("mongodb+srv://admin:Xy9!pq@cluster0.mongodb.net/test", "connection-string-password", "Xy9!pq");
        fires("redis://:hunter22@cache:6379/0", "connection-string-password", "hunter22");
        fires("amqp://guest:Gu3st-99@rabbit/", "connection-string-password", "Gu3st-99");
        silent("postgres://user:password@localhost/db");
        silent("postgres://user:${DB_PASSWORD}@localhost/db");
        silent("postgres://localhost:5432/db");
    }

    #[test]
    fn pagination_tokens_are_not_credentials() {
        let v = rand(ALNUM, 30, 77);
        silent(&format!("{{\"items\": [], \"nextPageToken\": \"{v}\", \"total\": 3}}"));
        silent(&format!("continuation_token = \"{v}\""));
        fires(&format!("{{\"api_token\": \"{v}\"}}"), "generic-api-key", &v);
    }

    #[test]
    fn tokens_at_the_end_of_a_sentence() {
        let t = format!("dckr_pat_{}", rand(ALNUM, 27, 5));
        fires(&format!("Here is the key you asked for: {t}."), "docker-hub-pat", &t);
        fires(&format!("Use {t}. It expires tomorrow."), "docker-hub-pat", &t);
    }

    #[test]
    fn generic_assignments() {
        let v = format!("{}9", rand(ALNUM, 31, 53));
        fires(&format!("my_service_secret = \"{v}\""), "generic-api-key", &v);
        fires("password = \"Tr0ub4dor&3x\"", "password-assignment", "\"Tr0ub4dor&3x\"");
        silent("api_key = \"<your-api-key-here>\"");
        silent("token: ${GITHUB_TOKEN}");
        silent("SECRET_KEY = \"changeme-please-1234\"");
        silent("password: xxxxxxxxxxxxxxxx");
        silent("secret_name = \"MY_DATABASE_SECRET_NAME\"");
        silent("token_count = 1234567890123");
        silent("password = \"password\"");
    }

    #[test]
    fn specific_rule_suppresses_generic() {
        let t = format!("ghp_{}", rand(ALNUM, 36, 54));
        assert_eq!(rules(&format!("GITHUB_TOKEN={t}")), ["github-pat"]);
    }

    #[test]
    fn benign_lookalikes() {
        silent("request 550e8400-e29b-41d4-a716-446655440000 done");
        silent("commit 3f786850e387550fdab836ed7e6dc881de23001b (HEAD -> main)");
        silent("sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
        silent("md5 d41d8cd98f00b204e9800998ecf8427e");
        let blob = rand(&format!("{ALNUM}+/"), 4000, 55);
        let found = scan(&format!("{{\"data\": \"{blob}==\"}}"));
        assert!(found.is_empty(), "{found:?}");
        silent("2024-05-01T12:00:00Z INFO request_id=7c9e6679-7425-40de-944b-e07fc1f90ae7 latency=12ms");
        silent("see the docs for the api key setting and the token budget");
        silent("ask the team: risk of disk-full on task-runner");
    }
}
