#!/bin/sh
# Makes the secrets of the docker compose deployment, once, on the machine that runs it:
#
#   deploy/setup.sh [--force] [DIR]
#
# DIR (default: the folder of docker-compose.yml) gets
#   .env                     mode 600, read by `docker compose` by itself: INFLUX_TOKEN,
#                            INFLUX_ADMIN_PASSWORD, GRAFANA_ADMIN_PASSWORD and one password per MQTT user
#                            (MQTT_PLANTWATCH_PASSWORD, MQTT_SENSORS_PASSWORD, MQTT_SCADA_PASSWORD,
#                            MQTT_HEALTHCHECK_PASSWORD);
#   deploy/mosquitto.passwd  mode 600, Mosquitto's password file for those users (salted hashes).
# What each MQTT user may do is in deploy/mosquitto.acl.
#
# An existing .env is never overwritten without --force: InfluxDB and Grafana keep the token and
# passwords of their first start, so new ones would lock plantwatch out of a running deployment.
# INFLUX_TOKEN and INFLUX_ADMIN_PASSWORD already set in the environment are kept (a deployment
# started before this script: give the values it was started with).
#
# Needs openssl, and mosquitto_passwd (Debian's package mosquitto) or else docker, which runs the
# mosquitto_passwd of the eclipse-mosquitto:2 image.
set -eu

MQTT_USERS="plantwatch sensors scada healthcheck"
MOSQUITTO_IMAGE="eclipse-mosquitto:2"

usage() {
    echo "usage: $0 [--force] [DIR]   (DIR: where docker-compose.yml is; default: this repository)" >&2
    exit 2
}

force=no
dir=
for arg in "$@"; do
    case "$arg" in
        --force) force=yes ;;
        -h | --help) usage ;;
        -*) echo "$0: unknown option $arg" >&2; usage ;;
        *) [ -z "$dir" ] || usage; dir=$arg ;;
    esac
done
[ -n "$dir" ] || dir=$(dirname "$0")/..
[ -d "$dir" ] || { echo "$0: $dir is not a folder" >&2; exit 2; }
dir=$(cd "$dir" && pwd)
env_file=$dir/.env
passwd_file=$dir/deploy/mosquitto.passwd

if [ -e "$env_file" ] && [ "$force" != yes ]; then
    echo "$0: $env_file exists; nothing changed." >&2
    echo "  Its secrets are the ones InfluxDB, Grafana and the broker were set up with: keep it." >&2
    echo "  To make new ones anyway (a fresh deployment, empty volumes): $0 --force $dir" >&2
    exit 1
fi

command -v openssl >/dev/null 2>&1 || { echo "$0: needs openssl" >&2; exit 1; }

secret() {
    openssl rand -hex 32
}

umask 077
mkdir -p "$dir/deploy"
work=$(mktemp -d "$dir/.setup.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 1' INT TERM

influx_token=${INFLUX_TOKEN:-$(secret)}
influx_admin_password=${INFLUX_ADMIN_PASSWORD:-$(secret)}
[ -z "${INFLUX_TOKEN:-}" ] || echo "$0: keeping INFLUX_TOKEN from the environment" >&2
[ -z "${INFLUX_ADMIN_PASSWORD:-}" ] || echo "$0: keeping INFLUX_ADMIN_PASSWORD from the environment" >&2

{
    echo "# Secrets of the plantwatch docker compose deployment, made by deploy/setup.sh."
    echo "# docker compose reads this file by itself (a variable set in the shell wins over it)."
    echo "# Keep it, mode 600 and out of git: InfluxDB and Grafana keep what they first started with."
    echo "INFLUX_TOKEN=$influx_token"
    echo "INFLUX_ADMIN_PASSWORD=$influx_admin_password"
    echo "GRAFANA_ADMIN_PASSWORD=$(secret)"
    echo "# MQTT users: deploy/mosquitto.passwd holds their hashes, deploy/mosquitto.acl what each may do."
} >"$work/env"
: >"$work/passwd"
for user in $MQTT_USERS; do
    password=$(secret)
    name=$(echo "$user" | tr '[:lower:]' '[:upper:]')
    echo "MQTT_${name}_PASSWORD=$password" >>"$work/env"
    echo "$user:$password" >>"$work/passwd"
done

# -U replaces each plain password by its salted hash, in place: no password on a command line.
if command -v mosquitto_passwd >/dev/null 2>&1; then
    mosquitto_passwd -U "$work/passwd"
elif command -v docker >/dev/null 2>&1; then
    docker run --rm --user "$(id -u):$(id -g)" -v "$work:/setup" "$MOSQUITTO_IMAGE" \
        mosquitto_passwd -U /setup/passwd
else
    echo "$0: needs mosquitto_passwd (apt install mosquitto) or docker to hash the MQTT passwords" >&2
    exit 1
fi
if grep -qv '^[a-z]*:\$' "$work/passwd"; then
    echo "$0: mosquitto_passwd left a password unhashed in $work/passwd; nothing written" >&2
    exit 1
fi

chmod 600 "$work/env" "$work/passwd"
mv "$work/passwd" "$passwd_file"
mv "$work/env" "$env_file"  # last: a run that failed before leaves no .env, and can be run again
echo "wrote $env_file and $passwd_file" >&2
