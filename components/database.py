"""The Database component: TLS between the Mattermost nodes and MySQL/MariaDB or PostgreSQL.

Owns, on the database host: the server certificate (issued by the stack CA for the server's
name and address) and its installation with the CA, the conf.d file that turns TLS on,
PostgreSQL's pg_hba.conf block (hostssl for each client), the restart that proves the server
came back serving that certificate (or rolls back), and the Mattermost user: created or given
its password, with its previous state saved on the host and restored by `pulumi destroy`.
Hands the nodes a secret DSN.

Two phases, because the nodes switch to their TLS DSN one at a time: phase 1 (`ready`, before
any node) offers TLS but still lets plain logins in, so unswitched nodes (and a node whose
switch failed and rolled back to plain) keep reaching the database. Phase 2 (`enforce_tls`,
after every client is ready) refuses plain logins: PostgreSQL's own `hostnossl ... reject`
block; MySQL/MariaDB require_secure_transport (set live, persisted in its own option file) and
REQUIRE SSL on the user. A destroy deletes phase 2 first (it depends on phase 1), so the server
stops enforcing before the nodes go back to plain.

Text (configs, scripts, SQL, DSN) comes from database_render; this module only wires resources.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_random as random
from pulumi_command import remote

from components import database_accounts as accounts
from components import database_render as r
from components.config import PROJECT, ConfigError, Gitlab
from components.config import Database as DatabaseConfig
from components.database_enforcement import moved_child
from components.pki import Pki, split_sans
from components.remote_files import ManagedFile, managed_block, managed_files, read_script, run_script
from components.remote_files_render import FileSpec, encode_bundle


class ConfigRunError(ConfigError, pulumi.RunError):
    """A ConfigError found inside an apply. It surfaces after __main__.py returned (the SDK
    re-raises it from `wait_for_rpcs`, pulumi/pulumi sdk/python/lib/pulumi/runtime/stack.py),
    where __main__'s conversion cannot catch it; as a RunError the CLI still prints the message
    alone (sdk/python/cmd/pulumi-language-python-exec)."""


@dataclass(frozen=True)
class DatabasePreflight:
    """What `database_preflight` hands on: the read-only checks `preflights-passed` waits for, and
    the accounts they found."""

    resources: list[pulumi.Resource]
    """For preflights_passed: nothing changes on any host before these completed."""
    mysql_hosts: pulumi.Output[list[str]]
    """The hosts of the Mattermost user's accounts the program handles ('%' and every account a
    node logs in through: database_accounts.plan_hosts)."""


def database_control(db: DatabaseConfig, engine: str | None = None) -> r.ServerControl:
    """How the database host's packages run the server (`engine`: default database.engine),
    from the database's config and its host's Platform."""
    return r.server_control(
        engine or db.engine,
        service=db.effective_service,
        port=db.effective_port,
        config_dir=db.effective_config_dir,
        platform=db.host_platform,
    )


@dataclass(frozen=True)
class DatabasePreflightArgs:
    """Inputs of `database_preflight` (built from the stack config by components/adapter.py)."""

    database: DatabaseConfig
    """The validated `database` section."""
    connection: remote.ConnectionArgs
    """SSH to the database host."""
    clients: Mapping[str, str]
    """Node name -> address: the clients whose login account is decided."""


def database_preflight(args: DatabasePreflightArgs, opts: pulumi.ResourceOptions | None = None) -> DatabasePreflight:
    """`database-accounts` (MySQL/MariaDB): read-only, before anything changes on any host, it
    lists the Mattermost user's accounts (and the anonymous ones) on the database host; at apply
    time `database_accounts.plan_hosts` decides which one each node logs in through, and refuses,
    naming the account, what the program cannot handle. `database-accounts-checked` (no command)
    carries that decision to `preflights-passed`: refused, it never registers, and neither does
    anything after the barrier.

    Like the nodes' preflights, the read runs when it is created or its script changes, so a
    run after a refusal still sees the accounts of that read: the refusal says to replace it
    (`pulumi up --replace <its URN>`) once the accounts are fixed.

    The read uses the local admin socket. With database.adminUser the admin logs in over
    verified TLS, which the server offers only once this program installed it: then nothing is
    read and '%' stays the only account handled (as before; README)."""
    db = args.database
    if db.engine != "mysql" or db.admin_user is not None:
        return DatabasePreflight([], pulumi.Output.from_input(["%"]))
    control = database_control(db)
    connection = args.connection
    read = read_script(
        "database-accounts",
        connection=connection,
        script=accounts.render_accounts_read(user=db.user, client=control.local_sql),
        opts=opts,
    )
    clients = dict(args.clients)
    user = db.user

    def plan(out: str) -> list[str]:
        try:
            found, skip = accounts.parse_accounts(out)
            return accounts.plan_hosts(found, user=user, clients=clients, skip_name_resolve=skip)
        except accounts.AccountError as e:
            raise ConfigRunError(f"{PROJECT}:database.user: {e}") from None

    hosts = read.stdout.apply(plan)
    checked = remote.Command("database-accounts-checked", connection=connection, triggers=[hosts], opts=opts)
    return DatabasePreflight([checked], hosts)


@dataclass(frozen=True)
class SitePasswordSource:
    """Where the running site's database password is read (the first node's current DSN:
    database_render.render_read_current_dsn)."""

    node: str
    """The node's name (for messages)."""
    connection: remote.ConnectionArgs
    """SSH to the node."""
    unit: str
    """The node's Mattermost systemd unit."""
    install_dir: str
    """The node's Mattermost install directory (its config.json)."""
    env_file: str
    """The EnvironmentFile this program writes on the node."""


@dataclass(frozen=True)
class DatabaseArgs:
    """Inputs of the Database component (built from the stack config by components/adapter.py)."""

    database: DatabaseConfig
    """The validated `database` section (with an address)."""
    connection: remote.ConnectionArgs
    """SSH to the database host."""
    pki: Pki
    """The stack CA that issues the server certificate."""
    client_addresses: list[str]
    """IP addresses that connect as the Mattermost user (the nodes); each gets a hostssl line."""
    password: pulumi.Output[str] | None = None
    """dbPassword (secret), else None: the site's current one, or a rotation's."""
    admin_password: pulumi.Output[str] | None = None
    """dbAdminPassword (secret): needed with database.adminUser, else None."""
    site_password: SitePasswordSource | None = None
    """Where the site's current password is read when neither dbPassword nor a rotation gives one."""
    gitlab: Gitlab | None = None
    """The `gitlab` section when GitLab's bundled Mattermost uses this PostgreSQL
    (gitlab.externalPostgres): it gets its own role, database and lines; else None."""
    preflight: DatabasePreflight | None = None
    """`database_preflight(...)`: the MySQL/MariaDB accounts the nodes log in through (None:
    '%' only, as for a program that does not read them)."""


class Database(pulumi.ComponentResource):
    """The database server with TLS on and the Mattermost user needing it."""

    driver_name: str
    """Mattermost's SqlSettings.DriverName: "mysql" or "postgres"."""
    password: pulumi.Output[str]
    """The Mattermost user's password (secret): config dbPassword, else the site's current one
    (read from the first node), else - with database.rotatePassword - generated."""
    ready: list[pulumi.Resource]
    """What the nodes wait for (phase 1): TLS live on the server, hostssl lines, the user with
    its password. Plain logins still work until `enforce_tls`."""
    server_name: str
    """The name the DSN uses for the server; the certificate is valid for it and the address."""
    server_cert_expiry: pulumi.Output[str]
    """When the server certificate expires (RFC 3339); `pulumi up` renews it before that."""
    gitlab_ready: list[pulumi.Resource]
    """With gitlab.externalPostgres: what GitLab's bundled Mattermost waits for (TLS live, its
    hostssl line, its own role and database); else empty."""

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mattermost-tls:database:Database", name, None, opts)
        db = args.database
        if db.address is None:  # the schema refuses this; keep the promise even if misused
            raise ConfigError(f"{PROJECT}:database.address: missing")
        engine = db.engine
        self._engine = engine
        self._db = db
        self._gitlab_cfg = args.gitlab
        self._mysql_hosts = args.preflight.mysql_hosts if args.preflight else pulumi.Output.from_input(["%"])
        self._connection: remote.ConnectionArgs | None = None
        self._enforced: list[pulumi.Resource] | None = None
        self.driver_name = engine
        self.server_name = db.server_name or db.address
        child = pulumi.ResourceOptions(parent=self)

        self._rotating = args.password is None and db.rotate_password
        self.login: pulumi.Output[str] = pulumi.Output.from_input(db.user)
        """The user the nodes log in as: database.user, or a rotation's own login (`_rotation`)."""
        self.password = self._password(name, args, child)

        connection = args.connection
        self._connection = connection
        self._control = None
        port = db.effective_port
        config_dir = db.effective_config_dir
        tls_dir = db.effective_tls_dir
        paths = r.tls_paths(tls_dir)
        config_file = r.server_config_path(engine, config_dir)
        control = database_control(db)
        svc_user = db.host_platform.server_user(engine)
        self._control = control
        self._config_dir = config_dir

        issued = args.pki.issue_server_cert(f"{name}-server", split_sans([self.server_name, db.address]), parent=self)
        self.server_cert_expiry = issued.cert.validity_end_time

        conf = r.render_mysql_cnf(tls_dir) if engine == "mysql" else r.render_pg_conf(tls_dir)
        # PostgreSQL reloads its SSL settings (open connections stay up); MySQL/MariaDB restart
        activate = (r.render_pg_reload_activate if engine == "postgres" else r.render_activate)(
            control,
            config_file=config_file,
            tls_probe=r.render_tls_probe(
                engine, address=db.address, port=port, ca_file=paths.ca, server_name=self.server_name
            ),
        )
        server_tls = managed_files(
            f"{name}-server-tls",
            connection=connection,
            files=[
                ManagedFile(FileSpec(paths.ca, "0644"), args.pki.ca_cert_pem),
                ManagedFile(FileSpec(paths.cert, "0644"), issued.cert_pem),
                ManagedFile(FileSpec(paths.key, "0600", svc_user, svc_user), issued.key_pem),
                ManagedFile(FileSpec(config_file, "0644"), conf),
            ],
            validate=r.render_validate(
                engine, control, config_file=config_file, tls_dir=tls_dir, platform=db.host_platform
            ),
            activate=activate,
            # after delete our config file is gone, so the same script restarts without probing TLS
            restore_activate=activate,
            secret=True,
            opts=child,
        )
        self.ready = [server_tls]

        if engine == "postgres":
            hba_file = f"{config_dir}/pg_hba.conf"
            hba = managed_block(
                f"{name}-pg-hba",
                connection=connection,
                path=hba_file,
                content=r.render_pg_hba_block(db.name, db.user, list(args.client_addresses)),
                position="top",
                validate=r.render_hba_validate(control, hba_file=hba_file),
                activate=control.reload,
                restore_activate=control.reload,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[server_tls]),
            )
            self.ready.append(hba)

        self._name = name
        self._ca_file = paths.ca
        self.ready.append(self._user(name, args.admin_password, connection, control, paths.ca, child))
        if self._rotating:
            self.ready.extend(self._rotation_login(name, connection, control, list(args.client_addresses)))
        self.gitlab_ready = self._gitlab(name, args.gitlab, server_tls) if args.gitlab is not None else []
        self.register_outputs({"server_cert_expiry": self.server_cert_expiry})

    def _password(self, name: str, args: DatabaseArgs, child: pulumi.ResourceOptions) -> pulumi.Output[str]:
        """The Mattermost user's password. A running site's password is never changed by
        surprise: the nodes open new database connections all the time (database/sql), and a
        password changed before a node switched to its new DSN fails that node's next login.

        - `dbPassword` given: that one (explicit).
        - else, `database.rotatePassword: true`: a generated one (an explicit rotation).
        - else (default): the one the site uses now, read at apply time from the first node's
          current DSN (its running environment, this program's EnvironmentFile, or config.json;
          database_render.render_read_current_dsn) and carried on as a secret, never typed."""
        if args.password is not None:  # the schema checked it (components/passwords.py)
            return pulumi.Output.secret(args.password)
        if self._db.rotate_password:
            # the rotation's login (database_render "password rotation"); a new one, and with it a
            # new password, is a new rotation: `pulumi up --replace` this resource
            suffix = random.RandomString(
                f"{name}-login",
                length=r.ROTATION_SUFFIX_LENGTH,
                special=False,
                upper=False,
                opts=child,
            )
            engine, user = self._engine, self._db.user
            try:
                r.rotation_login(engine, user, "a" * r.ROTATION_SUFFIX_LENGTH)
            except ValueError as e:
                raise ConfigError(f"{PROJECT}:{e}") from None
            self.login = suffix.result.apply(lambda sfx: r.rotation_login(engine, user, sfx))
            return _generated_password(f"{name}-password", child, keepers={"login": suffix.result})
        source = args.site_password
        if source is None:  # the schema requires a node
            raise ValueError("Database needs site_password (the first node) without dbPassword or a rotation")
        read = run_script(
            f"{name}-current-password",
            connection=source.connection,
            create=r.render_read_current_dsn(
                unit=source.unit, install_dir=source.install_dir, env_file=source.env_file
            ),
            secret=True,
            opts=child,
        )
        engine, user, node_name = self._engine, self._db.user, source.node
        return pulumi.Output.secret(
            read.stdout.apply(lambda out: r.current_password(engine, user, out, node=node_name))
        )

    def _user(
        self,
        name: str,
        admin_password: pulumi.Output[str] | None,
        connection: remote.ConnectionArgs,
        control: r.ServerControl,
        ca_file: str,
        child: pulumi.ResourceOptions,
    ) -> pulumi.Resource:
        """The Mattermost user needing TLS. Named after the user, so configuring another user
        creates that one and restores the old one. The owner token changes with the host:
        moving the database replaces this command, which then restores the old host too."""
        db = self._db
        assert db.address is not None
        engine = self._engine
        token = _owner_token(f"{name}-db-user-{db.user}-owner", db.ssh.address or db.address, child)
        admin_user = db.admin_user
        if admin_user is not None:
            assert admin_password is not None  # the schema requires it with adminUser
            address, port = db.address, db.effective_port

            def secret_file(password: str) -> str:
                try:
                    return r.render_admin_secret(
                        engine, admin_user=admin_user, admin_password=password, address=address, port=port, ca_file=ca_file
                    )
                except ValueError as e:  # the schema checked the password (components/passwords.py)
                    raise ConfigRunError(f"{PROJECT}:{e}") from None

            admin_secret: pulumi.Output[str] = pulumi.Output.secret(admin_password.apply(secret_file))
        else:
            admin_secret = pulumi.Output.from_input("")
        self._admin_secret = admin_secret
        client = r.admin_client(
            engine, control, admin_user=admin_user, address=db.address, port=db.effective_port, ca_file=ca_file
        )
        self._client = client
        if self._rotating:  # the user keeps its password until the retire step (enforce_tls)
            sql: pulumi.Output[str] = pulumi.Output.from_input(
                r.render_rotation_owner_sql(engine, user=db.user, database=db.name)
            )
        else:
            hosts = self._mysql_hosts
            sql = pulumi.Output.all(self.password, hosts).apply(
                lambda v: "".join(
                    r.render_user_sql(engine, user=db.user, database=db.name, password=v[0], host=h) for h in v[1]
                )
            )
        stdin = pulumi.Output.all(token.result, admin_secret, sql).apply(lambda v: r.user_stdin(v[0], v[1], v[2]))
        apply_script = r.render_user_apply(engine, user=db.user, database=db.name, client=client)
        return run_script(
            f"{name}-db-user-{db.user}",
            connection=connection,
            create=apply_script,
            update=apply_script,
            delete=r.render_user_restore(engine, user=db.user, client=client),
            stdin=stdin,
            secret=True,
            # a new token (new host) replaces the command: create on the new host, then the old
            # delete restores the old host; same host: the old delete sees the new token and stays out
            triggers=[token.result],
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=list(self.ready))),
        )

    def enforce_tls(self, after: Sequence[pulumi.Resource], parent: pulumi.Resource | None = None) -> list[pulumi.Resource]:
        """Phase 2: refuse plain logins of the Mattermost user, once everything in `after` (every
        node's `ready`, and any other client's) completed; call exactly once, after the clients.
        `parent` (components/database_enforcement.py) parents the resources; their alias keeps the
        place they had as this component's children in existing stacks."""
        if self._enforced is not None:
            raise RuntimeError(f"{self._name}: enforce_tls() was already called")
        assert self._connection is not None and self._control is not None
        db = self._db
        assert db.address is not None
        control = self._control
        child = moved_child(self, parent)
        opts = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[*after, *self.ready]))
        owner = f"{self._name}-enforce-tls"
        if self._engine == "postgres":
            hba_file = f"{self._config_dir}/pg_hba.conf"
            enforced: list[pulumi.Resource] = [
                managed_block(
                    owner,
                    connection=self._connection,
                    path=hba_file,
                    content=r.render_pg_hba_enforce_block(db.user),
                    position="top",
                    validate=r.render_hba_validate(control, hba_file=hba_file),
                    activate=r.render_pg_enforce_activate(
                        control,
                        hba_file=hba_file,
                        address=db.address,
                        port=db.effective_port,
                        user=db.user,
                        database=db.name,
                    ),
                    restore_activate=control.reload,
                    opts=opts,
                )
            ]
        else:
            enforce_file = r.mysql_enforce_config_path(self._config_dir)
            activate = r.render_mysql_enforce_activate(control, config_file=enforce_file)
            server = managed_files(
                owner,
                connection=self._connection,
                files=[ManagedFile(FileSpec(enforce_file, "0644"), r.render_mysql_enforce_cnf())],
                activate=activate,
                # after delete our file is gone: the same script sets the value the rest says
                restore_activate=activate,
                opts=opts,
            )
            stdin = pulumi.Output.all(self._admin_secret, self._mysql_hosts).apply(
                lambda v: encode_bundle([v[0], *accounts.render_require_ssl_sql(db.user, v[1])])
            )
            user = run_script(
                f"{owner}-user-{db.user}",
                connection=self._connection,
                create=r.render_mysql_require_ssl(user=db.user, client=self._client),
                delete=r.render_mysql_require_ssl(user=db.user, client=self._client, restore=True),
                stdin=stdin,
                secret=True,
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[server])),
            )
            enforced = [server, user]
        if self._rotating:
            enforced.append(self._rotation_retire(opts))
        self._enforced = enforced
        return list(enforced)

    def _gitlab(self, name: str, gl: Gitlab, server_tls: pulumi.Resource) -> list[pulumi.Resource]:
        """GitLab's bundled Mattermost gets its own role and database on this PostgreSQL (the
        config refuses the nodes' name or user): its own generated password, its own hostssl
        line for the GitLab host only, and (enforce_gitlab_tls) its own reject line. The role
        and a database this creates go again on destroy; an existing one gets its state back."""
        db = self._db
        assert gl.address is not None and self._connection is not None and self._control is not None
        child = pulumi.ResourceOptions(parent=self)
        self._gitlab_password = _generated_password(f"{name}-gitlab-password", child)
        hba_file = f"{self._config_dir}/pg_hba.conf"
        hba = managed_block(
            f"{name}-gitlab-pg-hba",
            connection=self._connection,
            path=hba_file,
            content=r.render_pg_hba_block(gl.database_name, gl.database_user, [gl.address]),
            position="top",
            validate=r.render_hba_validate(self._control, hba_file=hba_file),
            activate=self._control.reload,
            restore_activate=self._control.reload,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[server_tls]),
        )
        assert db.address is not None
        token = _owner_token(f"{name}-gitlab-db-user-{gl.database_user}-owner", db.ssh.address or db.address, child)
        user, database, client = gl.database_user, gl.database_name, self._client
        sql = self._gitlab_password.apply(
            lambda pw: r.render_user_sql("postgres", user=user, database=database, password=pw)
        )
        stdin = pulumi.Output.all(token.result, self._admin_secret, sql).apply(lambda v: r.user_stdin(v[0], v[1], v[2]))
        apply_script = r.render_user_apply(
            "postgres",
            user=user,
            database=database,
            client=client,
            before=r.render_gitlab_database_create(user=user, database=database),
        )
        role = run_script(
            f"{name}-gitlab-db-user-{user}",
            connection=self._connection,
            create=apply_script,
            update=apply_script,
            delete=r.render_user_restore(
                "postgres", user=user, client=client, before=r.render_gitlab_database_drop(user=user, database=database)
            ),
            stdin=stdin,
            secret=True,
            triggers=[token.result],  # as the nodes' user: a new host replaces it (see _user)
            opts=pulumi.ResourceOptions(parent=self, depends_on=[server_tls, hba]),
        )
        return [server_tls, hba, role]

    def enforce_gitlab_tls(
        self, after: Sequence[pulumi.Resource], parent: pulumi.Resource | None = None
    ) -> list[pulumi.Resource]:
        """Phase 2 for GitLab's own role: its reject line, once GitLab's Mattermost (`after`) uses
        its TLS DSN; independent of the nodes' enforce step (another role). `parent` as for enforce_tls."""
        if not self.gitlab_ready:
            return []
        gl = self._gitlab_cfg
        assert gl is not None and self._connection is not None and self._control is not None
        assert self._db.address is not None
        hba_file = f"{self._config_dir}/pg_hba.conf"
        return [
            managed_block(
                f"{self._name}-gitlab-enforce-tls",
                connection=self._connection,
                path=hba_file,
                content=r.render_pg_hba_enforce_block(gl.database_user),
                position="top",
                validate=r.render_hba_validate(self._control, hba_file=hba_file),
                activate=r.render_pg_enforce_activate(
                    self._control,
                    hba_file=hba_file,
                    address=self._db.address,
                    port=self._db.effective_port,
                    user=gl.database_user,
                    database=gl.database_name,
                ),
                restore_activate=self._control.reload,
                opts=pulumi.ResourceOptions.merge(
                    moved_child(self, parent), pulumi.ResourceOptions(depends_on=[*after, *self.gitlab_ready])
                ),
            )
        ]

    def gitlab_dsn(self, ca_file: str) -> pulumi.Output[str]:
        """The DataSource of GitLab's bundled Mattermost (secret): its own role and database;
        `ca_file` is where the GitLab host keeps the stack CA."""
        if not self.gitlab_ready:
            raise RuntimeError(f"{self._name}: gitlab_dsn() needs gitlab.enabled and gitlab.externalPostgres")
        gl, db = self._gitlab_cfg, self._db
        assert gl is not None  # gitlab_ready is empty without it
        return pulumi.Output.secret(
            self._gitlab_password.apply(
                lambda pw: r.render_dsn(
                    "postgres",
                    gl.database_user,
                    pw,
                    self.server_name,
                    db.effective_port,
                    gl.database_name,
                    db.effective_tls_mode,
                    ca_file,
                )
            )
        )

    def dsn(self, ca_file: str) -> pulumi.Output[str]:
        """Mattermost's DataSource for this database (secret). `ca_file` is where the NODE keeps
        the stack CA (PostgreSQL's sslrootcert); MySQL's tls=true uses the node's system roots."""
        db = self._db
        return pulumi.Output.secret(
            pulumi.Output.all(self.login, self.password).apply(
                lambda v: r.render_dsn(
                    self._engine,
                    v[0],
                    v[1],
                    self.server_name,
                    db.effective_port,
                    db.name,
                    db.effective_tls_mode,
                    ca_file,
                )
            )
        )

    # ------------------------------------------------------------ password rotation

    def _rotation_login(
        self, name: str, connection: remote.ConnectionArgs, control: r.ServerControl, clients: list[str]
    ) -> list[pulumi.Resource]:
        """Phase 1 of a rotation: the new login with the new password, TLS only, next to the old
        one (database_render "password rotation"). Its delete drops the login; a new rotation
        replaces it, create before delete: the old login goes once the nodes use the new one."""
        db, engine = self._db, self._engine
        made: list[pulumi.Resource] = []
        if engine == "postgres":
            hba_file = f"{self._config_dir}/pg_hba.conf"
            made.append(
                managed_block(
                    f"{name}-login-hba",
                    connection=connection,
                    path=hba_file,
                    content=self.login.apply(lambda lg: r.render_rotation_hba_block(db.name, db.user, lg, clients)),
                    position="top",
                    validate=r.render_hba_validate(control, hba_file=hba_file),
                    activate=control.reload,
                    restore_activate=control.reload,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.ready)),
                )
            )
        sqls = pulumi.Output.all(self.login, self.password).apply(
            lambda v: [
                r.render_rotation_login_sql(engine, user=db.user, login=v[0], database=db.name, password=v[1]),
                r.render_rotation_drop_sql(engine, user=db.user, login=v[0]),
            ]
        )
        who = f"database login of {db.user} (rotation)"
        made.append(
            run_script(
                f"{name}-login-{db.user}",
                connection=connection,
                create=r.render_rotation_script(who=who, client=self._client),
                delete=r.render_rotation_script(who=who, client=self._client, sql_line=2),
                stdin=pulumi.Output.all(self._admin_secret, sqls).apply(lambda v: encode_bundle([v[0], *v[1]])),
                secret=True,
                triggers=[self.login],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[*self.ready, *made]),
            )
        )
        return made

    def _rotation_retire(self, opts: pulumi.ResourceOptions) -> pulumi.Resource:
        """Phase 2 of a rotation, once every node uses the new login: the old one stops working
        (NOLOGIN / ACCOUNT LOCK; open sessions stay). Its delete, first in a destroy, lets it in
        again before the nodes go back to it."""
        assert self._connection is not None  # enforce_tls, the only caller, asserted it too
        db, engine = self._db, self._engine
        who = f"database user {db.user} (retired by the rotation)"
        sqls = self._mysql_hosts.apply(
            lambda hosts: [
                r.render_rotation_retire_sql(engine, user=db.user, mysql_hosts=hosts),
                r.render_rotation_retire_sql(engine, user=db.user, restore=True, mysql_hosts=hosts),
            ]
        )
        return run_script(
            f"{self._name}-retire-{db.user}",
            connection=self._connection,
            create=r.render_rotation_script(who=who, client=self._client),
            delete=r.render_rotation_script(who=who, client=self._client, sql_line=2),
            stdin=pulumi.Output.all(self._admin_secret, sqls).apply(lambda v: encode_bundle([v[0], *v[1]])),
            secret=True,
            opts=opts,
        )


def _generated_password(
    name: str, opts: pulumi.ResourceOptions, keepers: Mapping[str, pulumi.Input[str]] | None = None
) -> pulumi.Output[str]:
    """A generated database password (secret) from an alphabet no DSN, option file or SQL
    literal needs to escape (database_render.RANDOM_PASSWORD_SPECIALS); new when `keepers` change."""
    generated = random.RandomPassword(
        name,
        keepers=keepers,
        length=r.RANDOM_PASSWORD_LENGTH,
        special=True,
        override_special=r.RANDOM_PASSWORD_SPECIALS,
        min_lower=1,
        min_upper=1,
        min_numeric=1,
        min_special=1,
        opts=opts,
    )
    return pulumi.Output.secret(generated.result)


def _owner_token(name: str, ssh_host: str, opts: pulumi.ResourceOptions) -> random.RandomString:
    """A user command's owner token: drawn anew when the database host changes (keepers), which
    replaces the command (its triggers), so the old delete restores the old host."""
    return random.RandomString(name, length=16, special=False, upper=False, keepers={"host": ssh_host}, opts=opts)
